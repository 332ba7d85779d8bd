/* example.c -- what a VMM does to keep its guest's RAM across a live update, through luod.
 *
 *   luo_example preserve ID MIB [SOCKET]   before the update: a MIB MiB memfd (the "guest
 *                                          RAM") with a known pattern, SUBSCRIBE, wait for
 *                                          START_PRESERVATION, PRESERVE_FD, READY
 *   luo_example claim ID MIB [SOCKET]      after the kexec: CLAIM, RETRIEVE_FD, verify every
 *                                          byte, FINISH, FINISHED; prints "VERIFIED ID BYTES bytes"
 *
 * Every failure is one line on stderr naming the step and errno, and exit code 1.
 * Build: make -C examples/c   (or: gcc -std=c11 -Wall -Wextra -O2 -o luo_example example.c luo_client.c)
 */
#define _GNU_SOURCE
#include "luo_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The memfd's token in the session: any u64, unique within the session, the client's choice. */
#define RAM_TOKEN 0x52414dULL

static void die(const char *what, int err)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 32)
	fprintf(stderr, "luo_example: %s: %s (%s)\n", what, strerrorname_np(err), strerror(err));
#else
	fprintf(stderr, "luo_example: %s: errno %d (%s)\n", what, err, strerror(err));
#endif
	exit(1);
}

/* A refusal from luod, one line on stderr; bytes a terminal could act on shown as \xNN. */
static void refused(const char *step, const char *line)
{
	fprintf(stderr, "luo_example: %s: luod refused: ", step);
	for (const unsigned char *p = (const unsigned char *)line; *p; p++)
		fprintf(stderr, *p >= 0x20 && *p < 0x7f ? "%c" : "\\x%02x", *p);
	fputc('\n', stderr);
	exit(1);
}

/* Sends `json` (if any) and waits for the line containing `match`; dies on any error.
 * Returns the fd that line carried, or -1. */
static int request(struct luo_conn *c, const char *step, const char *json, const char *match,
		   char *line, size_t cap)
{
	char what[256];
	int fd;
	if (json && luo_send(c, json) < 0)
		goto failed;
	if (luo_await(c, match, line, cap, &fd) == 0)
		return fd;
	if (errno == EPROTO)
		refused(step, line);
failed:
	snprintf(what, sizeof what, "%s: %s", step, c->what);
	die(what, errno);
	return -1;
}

/* The pattern: every 8-byte word holds a hash of its offset, so a page moved is a mismatch. */
static uint64_t word_at(uint64_t offset)
{
	return (offset * 0x9e3779b97f4a7c15ULL) ^ 0x4c554f2d52414d21ULL;
}

static int ram_create(size_t bytes)
{
	int fd = memfd_create("luo-example-ram", MFD_CLOEXEC);
	if (fd < 0)
		die("memfd_create", errno);
	if (ftruncate(fd, (off_t)bytes) < 0)
		die("ftruncate", errno);
	uint64_t *ram = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (ram == MAP_FAILED)
		die("mmap", errno);
	for (size_t i = 0; i < bytes / 8; i++)
		ram[i] = word_at(i * 8);
	munmap(ram, bytes);
	return fd;
}

static void ram_verify(int fd, size_t bytes)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		die("fstat", errno);
	if ((size_t)st.st_size != bytes) {
		fprintf(stderr, "luo_example: MISMATCH: the memfd has %lld bytes, not %zu\n",
			(long long)st.st_size, bytes);
		exit(1);
	}
	const unsigned char *ram = mmap(NULL, bytes, PROT_READ, MAP_SHARED, fd, 0);
	if (ram == MAP_FAILED)
		die("mmap", errno);
	for (size_t off = 0; off < bytes; off += 8) {
		uint64_t want = word_at(off);
		const unsigned char *w = (const unsigned char *)&want;
		for (size_t b = 0; b < 8; b++)
			if (ram[off + b] != w[b]) {
				fprintf(stderr, "luo_example: MISMATCH at byte %zu: 0x%02x, not 0x%02x\n",
					off + b, ram[off + b], w[b]);
				exit(1);
			}
	}
	munmap((void *)ram, bytes);
}

static int preserve(struct luo_conn *c, const char *id, size_t bytes)
{
	char json[128], line[4096];
	int ram = ram_create(bytes); /* a VMM has its guest RAM in a memfd from the start */

	snprintf(json, sizeof json, "{\"cmd\":\"SUBSCRIBE\",\"id\":\"%s\"}", id);
	request(c, "SUBSCRIBE", json, "\"reply\":\"SUBSCRIBE\"", line, sizeof line);
	printf("SUBSCRIBED %s\n", id);
	fflush(stdout);

	/* An update starts: luod creates our outgoing session and hands us its fd. */
	int session = request(c, "waiting for START_PRESERVATION", NULL, "\"event\":\"START_PRESERVATION\"", line, sizeof line);
	if (session < 0)
		die("START_PRESERVATION came without a session fd", EBADMSG);
	/* A VMM pauses its vCPUs here, then preserves the RAM (and its device state). */
	if (luo_preserve_fd(session, ram, RAM_TOKEN) < 0)
		die("ioctl LIVEUPDATE_SESSION_PRESERVE_FD", errno);
	request(c, "READY", "{\"cmd\":\"READY\"}", "\"reply\":\"READY\"", line, sizeof line);
	printf("READY %s %zu bytes preserved\n", id, bytes);
	fflush(stdout);

	/* luod holds the session now; the kexec ends this process. If the update is aborted
	 * instead, a VMM closes the session fd and resumes its guest. */
	request(c, "after READY", NULL, "\"event\":\"ABORTED\"", line, sizeof line);
	fprintf(stderr, "luo_example: the update was aborted\n");
	return 1;
}

static int claim(struct luo_conn *c, const char *id, size_t bytes)
{
	char json[128], line[4096];

	/* CLAIMED is the reply to CLAIM: {"event":"CLAIMED","reply":"CLAIM","ok":true,...,"fds":1} */
	snprintf(json, sizeof json, "{\"cmd\":\"CLAIM\",\"id\":\"%s\"}", id);
	int session = request(c, "CLAIM", json, "\"reply\":\"CLAIM\"", line, sizeof line);
	if (session < 0)
		die("CLAIMED came without a session fd", EBADMSG);
	int ram = luo_retrieve_fd(session, RAM_TOKEN);
	if (ram < 0)
		die("ioctl LIVEUPDATE_SESSION_RETRIEVE_FD", errno);
	ram_verify(ram, bytes); /* a VMM would map it as guest RAM and restore its devices */
	if (luo_finish(session) < 0)
		die("ioctl LIVEUPDATE_SESSION_FINISH", errno);
	close(session);
	snprintf(json, sizeof json, "{\"cmd\":\"FINISHED\",\"id\":\"%s\"}", id);
	request(c, "FINISHED", json, "\"reply\":\"FINISHED\"", line, sizeof line);
	printf("VERIFIED %s %zu bytes\n", id, bytes);
	close(ram);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4 || argc > 5 || (strcmp(argv[1], "preserve") && strcmp(argv[1], "claim"))) {
		fprintf(stderr, "usage: luo_example preserve|claim ID MIB [SOCKET]\n");
		return 2;
	}
	const char *id = argv[2];
	/* ids are 1-48 bytes of [A-Za-z0-9._@:-] (docs/protocol.md, "Identity"): no JSON escaping */
	size_t idlen = strlen(id);
	if (idlen < 1 || idlen > 48 || strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					      "0123456789._@:-") != idlen)
		die("ID must be 1-48 characters of [A-Za-z0-9._@:-]", EINVAL);
	char *end;
	unsigned long mib = strtoul(argv[3], &end, 10);
	if (*end || mib < 1 || mib > 65536)
		die("MIB must be 1 to 65536", EINVAL);

	struct luo_conn *c = malloc(sizeof *c);
	if (!c)
		die("malloc", errno);
	const char *path = argc == 5 ? argv[4] : LUO_DEFAULT_SOCKET;
	if (luo_connect(c, path) < 0) {
		char what[512];
		snprintf(what, sizeof what, "%s %s", c->what, path);
		die(what, errno);
	}
	int rc = strcmp(argv[1], "preserve") == 0 ? preserve(c, id, mib << 20) : claim(c, id, mib << 20);
	luo_close(c);
	free(c);
	return rc;
}
