/* luo_client.h -- a minimal C client of luod (docs/protocol.md, "The seed protocol").
 *
 * One connection to luod's unix socket, newline-delimited JSON lines, session fds received
 * with SCM_RIGHTS, and the LUO session ioctls. Every function returns 0 (or an fd) on success
 * and -1 with errno set on failure; luo_conn.what then names the step that failed.
 */
#ifndef LUO_CLIENT_H
#define LUO_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>

#define LUO_DEFAULT_SOCKET "/run/luod/liveupdate.sock"

/* The kernel interface, copied from Linux 7.2 include/uapi/linux/liveupdate.h (see
 * docs/kernel.md, "ioctls" and "Struct layouts"), so this builds on a libc whose headers lack
 * it. All ioctls are _IO(0xBA, nr): no size bits; the size goes in the struct's first field.
 * Always pass the full struct with reserved fields zeroed. If the real header was included
 * first, its definitions are used. */
#ifndef _UAPI_LIVEUPDATE_H
#define LIVEUPDATE_IOCTL_TYPE 0xBA
#define LIVEUPDATE_SESSION_NAME_LENGTH 64

struct liveupdate_session_preserve_fd { /* 16 bytes; outgoing sessions only */
	uint32_t size;                  /* sizeof(struct ...) */
	int32_t fd;                     /* in: the memfd to preserve */
	_Alignas(8) uint64_t token;     /* in: unique within the session, the client's choice */
};
struct liveupdate_session_retrieve_fd { /* 16 bytes; incoming sessions only */
	uint32_t size;
	int32_t fd;                     /* out: the memfd, O_CLOEXEC */
	_Alignas(8) uint64_t token;     /* in: the token given to PRESERVE_FD */
};
struct liveupdate_session_finish { /* 8 bytes; incoming sessions only */
	uint32_t size;
	uint32_t reserved;              /* must be 0 */
};

#define LIVEUPDATE_SESSION_PRESERVE_FD _IO(LIVEUPDATE_IOCTL_TYPE, 0x40)
#define LIVEUPDATE_SESSION_RETRIEVE_FD _IO(LIVEUPDATE_IOCTL_TYPE, 0x41)
#define LIVEUPDATE_SESSION_FINISH      _IO(LIVEUPDATE_IOCTL_TYPE, 0x42)
#endif

/* The longest line this client accepts from luod. luod's lines may reach 2 MiB (LIST, STATUS),
 * but the events and replies awaited here are a few hundred bytes; a longer line is EMSGSIZE. */
#define LUO_LINE_MAX 65536
#define LUO_MAX_FDS 8 /* fds received and not yet matched to their line */

struct luo_conn {
	int sock;
	const char *what;               /* the step that failed, for the error message */
	char buf[LUO_LINE_MAX];         /* bytes received, not yet returned as lines */
	size_t len;
	int fds[LUO_MAX_FDS];           /* fds received, in order, not yet taken by a line */
	int nfds;
};

/* Connects to luod's socket (path NULL: LUO_DEFAULT_SOCKET). */
int luo_connect(struct luo_conn *c, const char *path);
/* Sends one JSON object; the newline is added here. */
int luo_send(struct luo_conn *c, const char *json);
/* Reads lines until one contains `match` (e.g. "\"reply\":\"CLAIM\"", which the CLAIMED event
 * has too) and copies it into line[cap]; other lines are skipped. The fd that line carries
 * ("fds":1) goes to *fd (-1 if none); fds of skipped lines are closed. The line found is
 * EPROTO if it says "ok":false (an error reply: the line tells why); end of file is ECONNRESET. */
int luo_await(struct luo_conn *c, const char *match, char *line, size_t cap, int *fd);
void luo_close(struct luo_conn *c);

/* The session ioctls. */
int luo_preserve_fd(int session, int memfd, uint64_t token);
int luo_retrieve_fd(int session, uint64_t token); /* returns the memfd */
int luo_finish(int session);

#endif
