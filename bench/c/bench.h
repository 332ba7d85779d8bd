/* bench.h -- what the C load generator (swarm.c) and the no-broker floor (floor.c) share:
 * clocks, their own CPU, the bench memfds and their stamp, the device ioctls. The session
 * ioctls come from the C reference client (examples/c/luo_client.h), compiled in.
 * Header-only (static functions): each program is one translation unit plus luo_client.c. */
#ifndef LUO_BENCH_H
#define LUO_BENCH_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "../../examples/c/luo_client.h"

/* The device ioctls (docs/kernel.md, "ioctls" and "Struct layouts"): 72 bytes, name NUL-terminated. */
struct bench_session_ioctl {
	uint32_t size;
	int32_t fd;
	char name[LIVEUPDATE_SESSION_NAME_LENGTH];
};
_Static_assert(sizeof(struct bench_session_ioctl) == 72, "docs/kernel.md, \"Struct layouts\"");
#define BENCH_IOCTL_CREATE_SESSION _IO(LIVEUPDATE_IOCTL_TYPE, 0x00)
#define BENCH_IOCTL_RETRIEVE_SESSION _IO(LIVEUPDATE_IOCTL_TYPE, 0x01)

/* The token every bench memfd is preserved under. */
#define BENCH_TOKEN 1

static inline double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* This process's CPU time (user + system), ms: reported beside every measured window. */
static inline double cpu_ms(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

/* One clear line on stderr and exit 1: the bench driver shows it. */
static inline void die(const char *fmt, ...)
{
	va_list ap;
	int e = errno;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s (%s)\n", e ? strerrorname_np(e) : "-", e ? strerror(e) : "");
	exit(1);
}

/* The first 8 bytes of an id's memfd: FNV-1a of the id, then its complement (little-endian). */
static inline void stamp(const char *id, uint8_t out[8])
{
	uint32_t x = 2166136261u;
	for (const char *p = id; *p; p++)
		x = (x ^ (uint8_t)*p) * 16777619u;
	uint32_t y = ~x;
	memcpy(out, &x, 4);
	memcpy(out + 4, &y, 4);
}

/* A memfd of `bytes` bytes, every page written (as a VM's memory: PRESERVE_FD of a sparse memfd
 * allocates its holes, docs/kernel.md#memfd-preservation), whose first 8 bytes are stamp(id). */
static inline int make_memfd(const char *id, size_t bytes)
{
	static uint8_t *filler;
	static size_t filler_len;
	if (bytes < 8)
		bytes = 8;
	if (filler_len < bytes) {
		free(filler);
		filler = malloc(bytes);
		if (!filler)
			die("malloc %zu", bytes);
		memset(filler, 0xa5, bytes);
		filler_len = bytes;
	}
	char name[80];
	snprintf(name, sizeof name, "bench-%s", id);
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		die("memfd_create %s", name);
	for (size_t off = 0; off < bytes;) {
		ssize_t n = pwrite(fd, filler + off, bytes - off, (off_t)off);
		if (n <= 0)
			die("writing memfd %s", name);
		off += (size_t)n;
	}
	uint8_t s[8];
	stamp(id, s);
	if (pwrite(fd, s, 8, 0) != 8)
		die("stamping memfd %s", name);
	return fd;
}

static inline int check_stamp(int fd, const char *id)
{
	uint8_t got[8], want[8];
	stamp(id, want);
	return pread(fd, got, 8, 0) == 8 && memcmp(got, want, 8) == 0;
}

/* /dev/liveupdate, retrying EBUSY: the device is single-open and luod opens it too
 * (docs/kernel.md#single-open-device). */
static inline int open_device(void)
{
	for (int i = 0;; i++) {
		int fd = open("/dev/liveupdate", O_RDWR | O_CLOEXEC);
		if (fd >= 0 || errno != EBUSY || i >= 50)
			return fd;
		usleep(1000u << (i < 6 ? i : 6));
	}
}

/* CREATE_SESSION (op BENCH_IOCTL_CREATE_SESSION) or RETRIEVE_SESSION: the session fd, or -1. */
static inline int session_ioctl(int dev, unsigned long op, const char *name)
{
	struct bench_session_ioctl arg = { .size = sizeof arg, .fd = -1 };
	snprintf(arg.name, sizeof arg.name, "%s", name);
	if (ioctl(dev, op, &arg) < 0)
		return -1;
	return arg.fd;
}

#endif
