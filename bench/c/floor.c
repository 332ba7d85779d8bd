/* floor.c -- the no-broker floor: the LUO ioctls luod and its clients make, done by one minimal
 * program: no sockets, no JSON protocol, no second process. What luod's barrier and restore are
 * compared with (docs/performance.md).
 *
 *   luo-floor barrier N BYTES REPS   REPS+1 barriers (the first is cold) with one set of N memfds
 *                                    made up front and reused, as the swarm's clients reuse theirs;
 *                                    prints one JSON line: {"runs":[...]}
 *   luo-floor hold N BYTES           one barrier with fresh memfds whose sessions stay open (the
 *                                    restore floor of the next boot); prints its JSON line, then
 *                                    waits for stdin's end (the kexec)
 *   luo-floor restore                after a live-update boot: gets back what `hold` preserved;
 *                                    prints one JSON line, or null when there is nothing
 *
 * barrier: open /dev/liveupdate, CREATE_SESSION ×N, close it; PRESERVE_FD ×N; a manifest-like
 *   session: a sealed memfd holding N JSON entries the size of luod's, its own CREATE_SESSION +
 *   PRESERVE_FD; then sync() (reported apart: luod stamps reboot_called_ms before its sync()).
 * restore: RETRIEVE_SESSION + read + FINISH of the manifest session; open the device,
 *   RETRIEVE_SESSION ×N, close it; RETRIEVE_FD ×N. Checking the stamps, FINISH and close come
 *   after (reported apart).
 * Every window reports this process's CPU (cpu_ms). Any failing syscall ends the program with
 * one line on stderr naming it. */
#include "bench.h"

#define MANIFEST_HELD "floor"

static void floor_session_name(char *out, size_t cap, const char *tag, int i)
{
	snprintf(out, cap, "floor:%s/%d", tag, i);
}

/* A manifest body of the size luod writes for n clients (same fields, made-up values). */
static char *manifest_like(const char *tag, int n, size_t *len)
{
	const char *at = "2026-01-01T00:00:00.000Z";
	size_t cap = 512 + (size_t)n * 256, off = 0;
	char *b = malloc(cap);
	if (!b)
		die("malloc manifest");
	off += (size_t)snprintf(b + off, cap - off,
		"{\"format\":\"luod-manifest\",\"version\":1,\"luod\":\"floor\",\"attempt\":1,\"createdAt\":\"%s\","
		"\"kernel\":{\"from\":\"7.2.13\",\"next\":{\"version\":\"7.2.13\",\"sha256\":\"%064d\",\"cmdline\":\"console=ttyS0 liveupdate=on\"}},"
		"\"timings\":{\"sessions_created_ms\":0,\"fds_sent_ms\":0,\"all_ready_ms\":0,\"manifest_ms\":0},\"entries\":[", at, 0);
	for (int i = 0; i < n; i++) {
		char name[LIVEUPDATE_SESSION_NAME_LENGTH];
		floor_session_name(name, sizeof name, tag, i);
		off += (size_t)snprintf(b + off, cap - off,
			"%s{\"id\":\"f-%d\",\"session\":\"%s\",\"uid\":0,\"gid\":0,\"pid\":%d,\"unit\":null,\"subscribedAt\":\"%s\",\"readyAt\":\"%s\"}",
			i ? "," : "", i, name, 1000 + i, at, at);
	}
	off += (size_t)snprintf(b + off, cap - off, "]}");
	*len = off;
	return b;
}

struct barrier {
	double sessions_created_ms, preserved_ms, manifest_preserved_ms, sync_ms, release_ms, cpu_ms;
};

/* One barrier; with hold the sessions stay open and *held gets them (n + 1: the manifest last). */
static struct barrier barrier(const int *memfds, int n, const char *tag, int hold, int **held)
{
	char manifest_name[LIVEUPDATE_SESSION_NAME_LENGTH];
	if (hold)
		snprintf(manifest_name, sizeof manifest_name, "%s", MANIFEST_HELD);
	else
		snprintf(manifest_name, sizeof manifest_name, "floor:%s", tag);
	int *sessions = malloc(sizeof(int) * (size_t)(n + 1));
	if (!sessions)
		die("malloc");
	struct barrier r = { 0 };
	double c0 = cpu_ms(), t0 = now_ms();
	int dev = open_device();
	if (dev < 0)
		die("open /dev/liveupdate");
	for (int i = 0; i < n; i++) {
		char name[LIVEUPDATE_SESSION_NAME_LENGTH];
		floor_session_name(name, sizeof name, tag, i);
		sessions[i] = session_ioctl(dev, BENCH_IOCTL_CREATE_SESSION, name);
		if (sessions[i] < 0)
			die("CREATE_SESSION %s", name);
	}
	close(dev);
	double t1 = now_ms();
	for (int i = 0; i < n; i++)
		if (luo_preserve_fd(sessions[i], memfds[i], BENCH_TOKEN) < 0)
			die("PRESERVE_FD f-%d", i);
	double t2 = now_ms();
	size_t len;
	char *blob = manifest_like(tag, n, &len);
	int mfd = memfd_create(manifest_name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (mfd < 0)
		die("memfd_create %s", manifest_name);
	if (pwrite(mfd, blob, len, 0) != (ssize_t)len)
		die("writing the manifest");
	free(blob);
	if (fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
		die("sealing the manifest");
	dev = open_device();
	if (dev < 0)
		die("open /dev/liveupdate");
	sessions[n] = session_ioctl(dev, BENCH_IOCTL_CREATE_SESSION, manifest_name);
	if (sessions[n] < 0)
		die("CREATE_SESSION %s", manifest_name);
	close(dev);
	if (luo_preserve_fd(sessions[n], mfd, 0) < 0)
		die("PRESERVE_FD of the manifest");
	close(mfd);
	double t3 = now_ms();
	r.cpu_ms = cpu_ms() - c0;
	sync();
	double t4 = now_ms();
	r.sessions_created_ms = t1 - t0;
	r.preserved_ms = t2 - t0;
	r.manifest_preserved_ms = t3 - t0;
	r.sync_ms = t4 - t3;
	if (hold) {
		*held = sessions;
		return r;
	}
	double t5 = now_ms();
	for (int i = 0; i <= n; i++)
		close(sessions[i]);
	r.release_ms = now_ms() - t5;
	free(sessions);
	return r;
}

static void print_barrier(int n, int cold, const struct barrier *r)
{
	printf("{\"n\":%d,\"cold\":%s,\"sessions_created_ms\":%.3f,\"preserved_ms\":%.3f,\"manifest_preserved_ms\":%.3f,"
		"\"sync_ms\":%.3f,\"release_ms\":%.3f,\"cpu_ms\":%.3f}",
		n, cold ? "true" : "false", r->sessions_created_ms, r->preserved_ms, r->manifest_preserved_ms, r->sync_ms, r->release_ms, r->cpu_ms);
}

static int *floor_memfds(int n, size_t bytes)
{
	int *fds = malloc(sizeof(int) * (size_t)n);
	if (!fds)
		die("malloc");
	for (int i = 0; i < n; i++) {
		char id[32];
		snprintf(id, sizeof id, "f-%d", i);
		fds[i] = make_memfd(id, bytes);
	}
	return fds;
}

static int cmd_barrier(int n, size_t bytes, int reps)
{
	int *memfds = floor_memfds(n, bytes);
	printf("{\"runs\":[");
	for (int r = 0; r <= reps; r++) {
		char tag[32];
		snprintf(tag, sizeof tag, "%d-%d", n, r);
		struct barrier b = barrier(memfds, n, tag, 0, NULL);
		if (r)
			printf(",");
		print_barrier(n, r == 0, &b);
	}
	printf("]}\n");
	return 0;
}

static int cmd_hold(int n, size_t bytes)
{
	int *memfds = floor_memfds(n, bytes);
	int *held;
	struct barrier b = barrier(memfds, n, "hold", 1, &held);
	for (int i = 0; i < n; i++)
		close(memfds[i]); /* LUO holds its own reference (docs/kernel.md#memfd-preservation) */
	print_barrier(n, 0, &b);
	printf("\n");
	fflush(stdout);
	char c;
	while (read(0, &c, 1) > 0)
		; /* the sessions live as long as this process: until the jump */
	return 0;
}

/* The value of "key":"..." at or after p, copied into out; the position after it, or NULL. */
static const char *json_string(const char *p, const char *key, char *out, size_t cap)
{
	p = strstr(p, key);
	if (!p)
		return NULL;
	p += strlen(key);
	const char *end = strchr(p, '"');
	if (!end || (size_t)(end - p) >= cap)
		return NULL;
	memcpy(out, p, (size_t)(end - p));
	out[end - p] = 0;
	return end + 1;
}

static int cmd_restore(void)
{
	double c0 = cpu_ms(), t0 = now_ms();
	int dev = open_device();
	if (dev < 0)
		die("open /dev/liveupdate");
	int ms = session_ioctl(dev, BENCH_IOCTL_RETRIEVE_SESSION, MANIFEST_HELD);
	close(dev);
	if (ms < 0) {
		if (errno != ENOENT)
			die("RETRIEVE_SESSION %s", MANIFEST_HELD);
		printf("null\n"); /* no floor sessions came across */
		return 0;
	}
	int mfd = luo_retrieve_fd(ms, 0);
	if (mfd < 0)
		die("RETRIEVE_FD of the manifest");
	off_t size = lseek(mfd, 0, SEEK_END);
	char *blob = malloc((size_t)size + 1);
	if (!blob || pread(mfd, blob, (size_t)size, 0) != size)
		die("reading the manifest");
	blob[size] = 0;
	close(mfd);
	if (luo_finish(ms) < 0)
		die("FINISH of the manifest");
	close(ms);
	int cap = 1024, n = 0;
	char (*ids)[64] = malloc(sizeof *ids * (size_t)cap);
	char (*names)[LIVEUPDATE_SESSION_NAME_LENGTH] = malloc(sizeof *names * (size_t)cap);
	const char *p = strstr(blob, "\"entries\":[");
	while (p && (p = json_string(p, "{\"id\":\"", ids[n], sizeof ids[n])) && (p = json_string(p, "\"session\":\"", names[n], sizeof names[n]))) {
		if (++n == cap) {
			cap *= 2;
			ids = realloc(ids, sizeof *ids * (size_t)cap);
			names = realloc(names, sizeof *names * (size_t)cap);
			if (!ids || !names)
				die("realloc");
		}
	}
	double t1 = now_ms();
	int *sessions = malloc(sizeof(int) * (size_t)(n + 1)), *memfds = malloc(sizeof(int) * (size_t)(n + 1));
	dev = open_device();
	if (dev < 0)
		die("open /dev/liveupdate");
	for (int i = 0; i < n; i++)
		if ((sessions[i] = session_ioctl(dev, BENCH_IOCTL_RETRIEVE_SESSION, names[i])) < 0)
			die("RETRIEVE_SESSION %s", names[i]);
	close(dev);
	double t2 = now_ms();
	for (int i = 0; i < n; i++)
		if ((memfds[i] = luo_retrieve_fd(sessions[i], BENCH_TOKEN)) < 0)
			die("RETRIEVE_FD %s", names[i]);
	double t3 = now_ms();
	double cpu = cpu_ms() - c0;
	int verified = 0;
	for (int i = 0; i < n; i++)
		verified += check_stamp(memfds[i], ids[i]);
	double t4 = now_ms();
	for (int i = 0; i < n; i++) {
		if (luo_finish(sessions[i]) < 0)
			die("FINISH %s", names[i]);
		close(sessions[i]);
		close(memfds[i]);
	}
	double t5 = now_ms();
	printf("{\"n\":%d,\"manifest_read_ms\":%.3f,\"sessions_retrieved_ms\":%.3f,\"fds_retrieved_ms\":%.3f,\"finish_ms\":%.3f,"
		"\"verified\":%d,\"cpu_ms\":%.3f}\n", n, t1 - t0, t2 - t0, t3 - t0, t5 - t4, verified, cpu);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "barrier"))
		return cmd_barrier(atoi(argv[2]), (size_t)atol(argv[3]), atoi(argv[4]));
	if (argc == 4 && !strcmp(argv[1], "hold"))
		return cmd_hold(atoi(argv[2]), (size_t)atol(argv[3]));
	if (argc == 2 && !strcmp(argv[1], "restore"))
		return cmd_restore();
	fprintf(stderr, "usage: luo-floor barrier N BYTES REPS | hold N BYTES | restore\n");
	return 2;
}
