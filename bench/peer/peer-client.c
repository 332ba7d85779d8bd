/* peer-client.c -- one service of the peer benchmark (bench/peer.ts, docs/performance.md,
 * "Fifth round: the peer (systemd's fd store)"): a memfd kept across a kexec either by systemd's
 * own fd store or by luod, the same program for both so that only the carrier differs.
 *
 *   luo-peer-client fdstore|luod ID MIB RESULT-DIR
 *
 * fdstore: started with the memfd in $LISTEN_FDS (named "mem" in $LISTEN_FDNAMES), it holds it
 *          again: verify. Otherwise a cold start: a new memfd with the pattern goes into the
 *          unit's fd store (FDSTORE=1 over $NOTIFY_SOCKET with SCM_RIGHTS; written by hand, no
 *          libsystemd). FileDescriptorStorePreserve=yes makes PID 1 carry it across the kexec
 *          (docs/systemd.md#how-pid-1-carries-fd-stores-across-a-kexec).
 * luod:    CLAIM ID; a session back: RETRIEVE_FD, verify, FINISH, FINISHED. ENOENT (nothing to
 *          claim): a cold start, SUBSCRIBE, then on START_PRESERVATION PRESERVE_FD and READY.
 *
 * After a verification it writes RESULT-DIR/<kind>-<ID>: "held_ns verified_ns bytes OK" (or
 * "... MISMATCH"), both CLOCK_MONOTONIC (system-wide, the clock of systemd's *TimestampMonotonic
 * properties), held = the moment the memfd is in this process's hands. Then READY=1 to systemd
 * and it waits to be stopped. Every failure is one line on stderr and exit 1.
 */
#define _GNU_SOURCE
#include "luo_client.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MEM_TOKEN 1ULL
#define FDNAME "mem"

static const char *id;

static void die(const char *what, int err)
{
	fprintf(stderr, "luo-peer-client %s: %s: %s\n", id ? id : "?", what, strerror(err));
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* The pattern: every 8-byte word a hash of its offset and the id's seed, so a page moved, or
 * another client's memfd handed to us, is a mismatch. */
static uint64_t seed;
static uint64_t word_at(uint64_t offset)
{
	return (offset * 0x9e3779b97f4a7c15ULL) ^ seed;
}

static int mem_create(size_t bytes)
{
	int fd = memfd_create("luo-peer", MFD_CLOEXEC);
	if (fd < 0)
		die("memfd_create", errno);
	if (ftruncate(fd, (off_t)bytes) < 0)
		die("ftruncate", errno);
	uint64_t *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (mem == MAP_FAILED)
		die("mmap", errno);
	for (size_t i = 0; i < bytes / 8; i++) /* every page written */
		mem[i] = word_at(i * 8);
	munmap(mem, bytes);
	return fd;
}

/* Every byte compared; 1 when the memfd is ours, whole. */
static int mem_verify(int fd, size_t bytes)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		die("fstat", errno);
	if ((size_t)st.st_size != bytes)
		return 0;
	const uint64_t *mem = mmap(NULL, bytes, PROT_READ, MAP_SHARED, fd, 0);
	if (mem == MAP_FAILED)
		die("mmap", errno);
	int ok = 1;
	for (size_t i = 0; i < bytes / 8 && ok; i++)
		ok = memcmp(&mem[i], &(uint64_t){ word_at(i * 8) }, 8) == 0;
	munmap((void *)mem, bytes);
	return ok;
}

static void record(const char *dir, const char *kind, uint64_t held, uint64_t verified, size_t bytes, int ok)
{
	char path[512], tmp[520], text[128];
	snprintf(path, sizeof path, "%s/%s-%s", dir, kind, id);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	int n = snprintf(text, sizeof text, "%llu %llu %zu %s\n", (unsigned long long)held,
			 (unsigned long long)verified, bytes, ok ? "OK" : "MISMATCH");
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		die("mkdir result dir", errno);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, text, (size_t)n) != n || close(fd) < 0)
		die("write result", errno);
	if (rename(tmp, path) < 0) /* the job counts whole files only */
		die("rename result", errno);
	printf("PEER %s %s %s %zu bytes held at %llu ns\n", ok ? "VERIFIED" : "MISMATCH", kind, id, bytes,
	       (unsigned long long)held);
	fflush(stdout);
}

/* sd_notify by hand (the protocol of sd_notify(3)): one datagram to $NOTIFY_SOCKET, an
 * abstract socket when it starts with '@', with `fd` as SCM_RIGHTS when fd >= 0. */
static void notify(const char *msg, int fd)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (!path || !*path)
		die("$NOTIFY_SOCKET is not set (not started by systemd as Type=notify)", EINVAL);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	size_t len = strlen(path);
	if (len >= sizeof addr.sun_path)
		die("$NOTIFY_SOCKET", ENAMETOOLONG);
	memcpy(addr.sun_path, path, len);
	if (addr.sun_path[0] == '@')
		addr.sun_path[0] = 0;
	int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		die("socket for sd_notify", errno);
	struct iovec iov = { .iov_base = (void *)msg, .iov_len = strlen(msg) };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl = { 0 };
	struct msghdr mh = {
		.msg_name = &addr,
		.msg_namelen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len),
		.msg_iov = &iov,
		.msg_iovlen = 1,
	};
	if (fd >= 0) {
		mh.msg_control = ctl.buf;
		mh.msg_controllen = sizeof ctl.buf;
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	if (sendmsg(s, &mh, MSG_NOSIGNAL) < 0)
		die("sendmsg to $NOTIFY_SOCKET", errno);
	close(s);
}

/* The fd named FDNAME in $LISTEN_FDS (sd_listen_fds(3): fds from 3 on, for our pid), or -1. */
static int listened_fd(void)
{
	const char *pid = getenv("LISTEN_PID"), *n = getenv("LISTEN_FDS"), *names = getenv("LISTEN_FDNAMES");
	if (!pid || !n || !names || strtol(pid, NULL, 10) != getpid())
		return -1;
	long count = strtol(n, NULL, 10);
	char *list = strdup(names), *save = NULL;
	int fd = -1;
	long i = 0;
	for (char *name = strtok_r(list, ":", &save); name && i < count; name = strtok_r(NULL, ":", &save), i++)
		if (strcmp(name, FDNAME) == 0 && fd < 0)
			fd = 3 + (int)i;
	free(list);
	return fd;
}

static void wait_for_stop(void)
{
	for (;;)
		pause(); /* SIGTERM's default action ends us */
}

static int fdstore(const char *dir, size_t bytes)
{
	int fd = listened_fd();
	if (fd >= 0) {
		uint64_t held = now_ns();
		int ok = mem_verify(fd, bytes);
		record(dir, "fdstore", held, now_ns(), bytes, ok);
		if (!ok)
			return 1;
		notify("READY=1\nSTATUS=verified the memfd from the fd store", -1);
		wait_for_stop();
	}
	fd = mem_create(bytes);
	notify("FDSTORE=1\nFDNAME=" FDNAME, fd);
	notify("READY=1\nSTATUS=the memfd is in the fd store", -1);
	wait_for_stop();
	return 0;
}

/* Sends `json` (if any) and awaits the line with `match`; 0, or -1 with errno (EPROTO: refused,
 * the line says why). */
static int request(struct luo_conn *c, const char *json, const char *match, char *line, size_t cap, int *fd)
{
	int unused;
	if (json && luo_send(c, json) < 0)
		return -1;
	return luo_await(c, match, line, cap, fd ? fd : &unused);
}

static int luod(const char *dir, size_t bytes)
{
	static struct luo_conn c;
	char json[128], line[4096] = "";
	int session;

	if (luo_connect(&c, LUO_DEFAULT_SOCKET) < 0)
		die(c.what, errno);
	snprintf(json, sizeof json, "{\"cmd\":\"CLAIM\",\"id\":\"%s\"}", id);
	if (request(&c, json, "\"reply\":\"CLAIM\"", line, sizeof line, &session) == 0) {
		if (session < 0)
			die("CLAIMED came without a session fd", EBADMSG);
		int fd = luo_retrieve_fd(session, MEM_TOKEN);
		if (fd < 0)
			die("ioctl LIVEUPDATE_SESSION_RETRIEVE_FD", errno);
		uint64_t held = now_ns();
		int ok = mem_verify(fd, bytes);
		uint64_t verified = now_ns();
		if (luo_finish(session) < 0)
			die("ioctl LIVEUPDATE_SESSION_FINISH", errno);
		close(session);
		snprintf(json, sizeof json, "{\"cmd\":\"FINISHED\",\"id\":\"%s\"}", id);
		if (request(&c, json, "\"reply\":\"FINISHED\"", line, sizeof line, NULL) < 0)
			die("FINISHED", errno);
		record(dir, "luod", held, verified, bytes, ok);
		if (!ok)
			return 1;
		notify("READY=1\nSTATUS=claimed and verified the memfd", -1);
		wait_for_stop();
	}
	if (errno != EPROTO || !strstr(line, "\"ENOENT\""))
		die("CLAIM", errno);
	int fd = mem_create(bytes);
	snprintf(json, sizeof json, "{\"cmd\":\"SUBSCRIBE\",\"id\":\"%s\"}", id);
	if (request(&c, json, "\"reply\":\"SUBSCRIBE\"", line, sizeof line, NULL) < 0)
		die("SUBSCRIBE", errno);
	notify("READY=1\nSTATUS=subscribed to luod", -1);
	if (request(&c, NULL, "\"event\":\"START_PRESERVATION\"", line, sizeof line, &session) < 0 || session < 0)
		die("waiting for START_PRESERVATION", session < 0 ? EBADMSG : errno);
	if (luo_preserve_fd(session, fd, MEM_TOKEN) < 0)
		die("ioctl LIVEUPDATE_SESSION_PRESERVE_FD", errno);
	if (request(&c, "{\"cmd\":\"READY\"}", "\"reply\":\"READY\"", line, sizeof line, NULL) < 0)
		die("READY", errno);
	/* luod holds the session now (in its fd store in systemd mode); the kexec ends us */
	wait_for_stop();
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 5 || (strcmp(argv[1], "fdstore") && strcmp(argv[1], "luod"))) {
		fprintf(stderr, "usage: luo-peer-client fdstore|luod ID MIB RESULT-DIR\n");
		return 2;
	}
	id = argv[2];
	/* ids go into JSON unescaped: 1-48 bytes of [A-Za-z0-9._@:-] (docs/protocol.md, "Identity") */
	size_t idlen = strlen(id);
	if (idlen < 1 || idlen > 48 ||
	    strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@:-") != idlen)
		die("ID must be 1-48 characters of [A-Za-z0-9._@:-]", EINVAL);
	char *end;
	unsigned long mib = strtoul(argv[3], &end, 10);
	if (*end || mib < 1 || mib > 65536)
		die("MIB must be 1 to 65536", EINVAL);
	seed = 0xcbf29ce484222325ULL; /* FNV-1a of the id */
	for (const char *p = id; *p; p++)
		seed = (seed ^ (unsigned char)*p) * 0x100000001b3ULL;
	signal(SIGPIPE, SIG_IGN);
	return strcmp(argv[1], "fdstore") == 0 ? fdstore(argv[4], mib << 20) : luod(argv[4], mib << 20);
}
