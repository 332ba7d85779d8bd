/* luo_client.c -- see luo_client.h. The wire rules it follows are docs/protocol.md, "Transport":
 * one JSON object per line; a line that carries fds says "fds":n, and its fds arrive (as
 * SCM_RIGHTS) no later than its last byte, in order, so every fd received joins a queue and a
 * complete line takes its n from the queue's head. Never recv()/read(): they drop passed fds.
 */
#define _GNU_SOURCE
#include "luo_client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* The sizes docs/kernel.md, "Struct layouts" gives: the kernel refuses a short struct. */
_Static_assert(sizeof(struct liveupdate_session_preserve_fd) == 16, "preserve_fd is 16 bytes");
_Static_assert(sizeof(struct liveupdate_session_retrieve_fd) == 16, "retrieve_fd is 16 bytes");
_Static_assert(sizeof(struct liveupdate_session_finish) == 8, "finish is 8 bytes");

static int fail(struct luo_conn *c, const char *what, int err)
{
	c->what = what;
	errno = err;
	return -1;
}

int luo_connect(struct luo_conn *c, const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };

	c->len = 0;
	c->nfds = 0;
	c->sock = -1;
	if (!path)
		path = LUO_DEFAULT_SOCKET;
	if (strlen(path) >= sizeof addr.sun_path)
		return fail(c, "socket path", ENAMETOOLONG);
	strcpy(addr.sun_path, path);
	c->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->sock < 0)
		return fail(c, "socket", errno);
	if (connect(c->sock, (struct sockaddr *)&addr, sizeof addr) < 0) {
		int err = errno;
		close(c->sock);
		c->sock = -1;
		return fail(c, "connect", err);
	}
	return 0;
}

int luo_send(struct luo_conn *c, const char *json)
{
	static char line[LUO_LINE_MAX]; /* static: one thread sends at a time */
	size_t len = strlen(json), done = 0;

	if (len + 1 > sizeof line) /* luod's limit: 65536 bytes with the newline */
		return fail(c, "send", EMSGSIZE);
	memcpy(line, json, len);
	line[len++] = '\n';
	while (done < len) { /* a stream socket may take part of it */
		ssize_t n = send(c->sock, line + done, len - done, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail(c, "send", errno);
		done += (size_t)n;
	}
	return 0;
}

/* One recvmsg into the free end of c->buf; the fds that came with it join c->fds. */
static ssize_t receive(struct luo_conn *c)
{
	union { /* a control buffer aligned for struct cmsghdr */
		char buf[CMSG_SPACE(LUO_MAX_FDS * sizeof(int))];
		struct cmsghdr align;
	} control;
	struct iovec iov = { .iov_base = c->buf + c->len, .iov_len = sizeof c->buf - c->len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = control.buf, .msg_controllen = sizeof control.buf };
	ssize_t n;
	int overflow = 0;

	do /* MSG_CMSG_CLOEXEC: the fds must not leak into programs we might exec */
		n = recvmsg(c->sock, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return fail(c, "recvmsg", errno);
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < count; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(cm) + i * sizeof fd, sizeof fd);
			if (c->nfds < LUO_MAX_FDS)
				c->fds[c->nfds++] = fd;
			else
				close(fd), overflow = 1;
		}
	}
	if (overflow || (msg.msg_flags & MSG_CTRUNC)) /* fds were lost: no line can be trusted */
		return fail(c, "recvmsg: more fds than expected", EOVERFLOW);
	c->len += (size_t)n;
	return n;
}

/* How many fds a line claims: its "fds":n (luod writes compact JSON; a string cannot hold an
 * unescaped quote, so this pattern only matches the real field). */
static int fds_claimed(const char *line)
{
	const char *p = strstr(line, "\"fds\":");
	return p ? atoi(p + 6) : 0;
}

int luo_await(struct luo_conn *c, const char *match, char *line, size_t cap, int *fd)
{
	*fd = -1;
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		if (!nl) { /* no complete line yet: receive more */
			if (c->len == sizeof c->buf)
				return fail(c, "a line from luod longer than LUO_LINE_MAX", EMSGSIZE);
			ssize_t n = receive(c);
			if (n < 0)
				return -1;
			if (n == 0)
				return fail(c, "luod closed the connection", ECONNRESET);
			continue;
		}
		*nl = '\0';
		size_t len = (size_t)(nl - c->buf);
		int nfds = fds_claimed(c->buf), taken[LUO_MAX_FDS];
		if (nfds < 0 || nfds > c->nfds)
			return fail(c, "a line from luod claims fds that did not come", EBADMSG);
		memcpy(taken, c->fds, (size_t)nfds * sizeof(int)); /* the line's fds: the queue's head */
		memmove(c->fds, c->fds + nfds, (size_t)(c->nfds - nfds) * sizeof(int));
		c->nfds -= nfds;
		int found = strstr(c->buf, match) != NULL;
		if (found && len >= cap) {
			for (int i = 0; i < nfds; i++)
				close(taken[i]);
			return fail(c, "the awaited line is longer than the caller's buffer", EMSGSIZE);
		}
		if (found)
			memcpy(line, c->buf, len + 1);
		memmove(c->buf, nl + 1, c->len - len - 1);
		c->len -= len + 1;
		for (int i = found ? 1 : 0; i < nfds; i++) /* fds nobody waits for */
			close(taken[i]);
		if (!found)
			continue;
		if (strstr(line, "\"ok\":false")) { /* an error reply: the line says why */
			if (nfds > 0)
				close(taken[0]);
			return fail(c, "luod refused the request", EPROTO);
		}
		*fd = nfds > 0 ? taken[0] : -1;
		return 0;
	}
}

void luo_close(struct luo_conn *c)
{
	while (c->nfds > 0)
		close(c->fds[--c->nfds]);
	if (c->sock >= 0)
		close(c->sock);
	c->sock = -1;
}

int luo_preserve_fd(int session, int memfd, uint64_t token)
{
	struct liveupdate_session_preserve_fd arg = { .size = sizeof arg, .fd = memfd, .token = token };
	return ioctl(session, LIVEUPDATE_SESSION_PRESERVE_FD, &arg);
}

int luo_retrieve_fd(int session, uint64_t token)
{
	struct liveupdate_session_retrieve_fd arg = { .size = sizeof arg, .fd = -1, .token = token };
	if (ioctl(session, LIVEUPDATE_SESSION_RETRIEVE_FD, &arg) < 0)
		return -1;
	return arg.fd;
}

int luo_finish(int session)
{
	struct liveupdate_session_finish arg = { .size = sizeof arg, .reserved = 0 };
	return ioctl(session, LIVEUPDATE_SESSION_FINISH, &arg);
}
