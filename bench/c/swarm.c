/* swarm.c -- N luod clients in one process: one epoll loop, raw sendmsg/recvmsg with SCM_RIGHTS,
 * the wire protocol written by hand (docs/protocol.md), the real LUO ioctls. A load generator
 * whose own CPU is a small fraction of luod's, so the 2 vCPUs of the bench VM go to luod; it
 * reports its CPU (getrusage) for every window it measures.
 *
 *   luo-swarm SOCKET BYTES [--no-luo]
 *
 * Driven by the bench (bench/lib/swarm.ts) over stdin, one command per line; one JSON line on
 * stdout answers each (times in ms; "_ms" fields since the command came unless said otherwise):
 *   subscribe PREFIX N   N clients PREFIX-0.. connect and SUBSCRIBE (in batches of 100, so luod's
 *                        backlog never overflows for long), each with its memfd of BYTES (every
 *                        page written) made up front
 *   prepare              every client PREPAREs and preserves its memfd into its session at once
 *   round                starts a barrier round: on START_PRESERVATION a client preserves its
 *                        memfd (token 1), sends READY and closes the session fd; a prepared one
 *                        (prepared:true, no fd) sends READY at once
 *   aborted              answers when every client saw ABORTED (a dry run ended): the round's times
 *   claim PREFIX N       after the jump: N clients connect to an accepting socket and CLAIM;
 *                        answers when each holds its memfd (RETRIEVE_FD token 1)
 *   restore PREFIX N LOG LUOD-ARGV...
 *                        spawns luod (stderr to LOG), connects as soon as its socket accepts
 *                        (polled every ms), then as claim; times since the spawn
 *   finish               checks each restored memfd's stamp, FINISHes its session, sends FINISHED
 *   close                UNSUBSCRIBE and close every client
 * --no-luo: luod runs with the fake kernel (bench/profile.ts): session fds are plain memfds, so
 * no ioctl; CLAIMED counts as held.
 * Errors in the clients are collected (the first few are reported); a syscall of the generator's
 * own that fails ends it with one line on stderr. */
#include "bench.h"

#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#define BATCH 100
#define MAX_QUEUED_FDS 8
#define COMMAND_TIMEOUT_MS 300000.0

struct client {
	char id[64];
	int sock, memfd, session, restored;
	char *buf;
	size_t len, cap;
	int fdq[MAX_QUEUED_FDS];
	int nfdq;
};

static const char *sock_path;
static size_t bytes;
static int luo = 1;
static int ep;
static struct client *clients;
static int nclients, cap_clients;

/* counters of the current command or round */
static int answered, prepared, restored, finished_replies, starts, ready_replies, aborted, recreated;
static double first_start, last_ready_sent, last_ready_reply, last_aborted, first_claimed, preserve_ms;
static char errors[5][256];
static int nerrors;

static void error_of(struct client *c, const char *fmt, ...)
{
	if (nerrors < 5) {
		va_list ap;
		int off = snprintf(errors[nerrors], sizeof errors[0], "%s: ", c->id);
		va_start(ap, fmt);
		vsnprintf(errors[nerrors] + off, sizeof errors[0] - (size_t)off, fmt, ap);
		va_end(ap);
	}
	nerrors++;
}

static void send_line(struct client *c, const char *line)
{
	size_t len = strlen(line);
	ssize_t n = send(c->sock, line, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n != (ssize_t)len)
		error_of(c, "send: %s", n < 0 ? strerrorname_np(errno) : "short write");
}

static void preserve(struct client *c, int session)
{
	if (!luo)
		return;
	double t = now_ms();
	if (luo_preserve_fd(session, c->memfd, BENCH_TOKEN) < 0) {
		if (errno != EBUSY) {
			error_of(c, "PRESERVE_FD: %s", strerrorname_np(errno));
			return;
		}
		/* the memfd is still preserved in the previous round's session: use a fresh one */
		close(c->memfd);
		c->memfd = make_memfd(c->id, bytes);
		recreated++;
		if (luo_preserve_fd(session, c->memfd, BENCH_TOKEN) < 0)
			error_of(c, "PRESERVE_FD: %s", strerrorname_np(errno));
	}
	preserve_ms += now_ms() - t;
}

/* The fd a line carries ("fds":1), taken from the head of the connection's queue
 * (docs/protocol.md, "Transport"); -1 if it carries none. */
static int take_fd(struct client *c, const char *line)
{
	if (!strstr(line, "\"fds\":1") || c->nfdq == 0)
		return -1;
	int fd = c->fdq[0];
	memmove(c->fdq, c->fdq + 1, sizeof(int) * (size_t)--c->nfdq);
	return fd;
}

#define IS(kind, name) (!strncmp(line, "{\"" kind "\":\"" name "\"", sizeof("{\"" kind "\":\"" name "\"") - 1))

static void on_line(struct client *c, char *line)
{
	double now = now_ms();
	int ok = strstr(line, "\"ok\":true") != NULL;
	int fd = take_fd(c, line);
	if (IS("event", "START_PRESERVATION")) {
		if (starts++ == 0)
			first_start = now;
		if (fd >= 0) {
			preserve(c, fd);
			close(fd); /* luod holds its own copy until the jump */
		}
		send_line(c, "{\"cmd\":\"READY\"}\n");
		last_ready_sent = now_ms();
		return;
	}
	if (IS("event", "CLAIMED")) {
		if (fd < 0) {
			error_of(c, "CLAIMED without a session fd");
			answered++;
			return;
		}
		c->session = fd;
		c->restored = luo ? luo_retrieve_fd(fd, BENCH_TOKEN) : dup(fd);
		if (c->restored < 0)
			error_of(c, "RETRIEVE_FD: %s", strerrorname_np(errno));
		if (restored++ == 0)
			first_claimed = now_ms();
		answered++;
		return;
	}
	if (IS("event", "ABORTED")) {
		aborted++;
		last_aborted = now;
	} else if (IS("reply", "PREPARE")) {
		if (ok && fd >= 0) {
			c->session = fd; /* kept: the prepared session lives as long as the subscription */
			preserve(c, fd);
			prepared++;
			fd = -1;
		} else
			error_of(c, "PREPARE: %.180s", line);
		answered++;
	} else if (IS("reply", "SUBSCRIBE") || IS("reply", "CLAIM")) {
		if (!ok)
			error_of(c, "%.200s", line);
		answered++;
	} else if (IS("reply", "READY")) {
		if (ok) {
			ready_replies++;
			last_ready_reply = now;
		} else
			error_of(c, "READY: %.180s", line);
	} else if (IS("reply", "FINISHED")) {
		if (!ok)
			error_of(c, "FINISHED: %.180s", line);
		finished_replies++;
	} else if (!ok && strstr(line, "\"ok\":false"))
		error_of(c, "%.200s", line);
	if (fd >= 0)
		close(fd); /* nothing else carries fds; never keep strays */
}

static void on_readable(struct client *c)
{
	for (;;) {
		if (c->cap - c->len < 65536) {
			c->cap = c->cap ? c->cap * 2 : 131072;
			c->buf = realloc(c->buf, c->cap);
			if (!c->buf)
				die("realloc");
		}
		char cbuf[CMSG_SPACE(sizeof(int) * MAX_QUEUED_FDS)];
		struct iovec iov = { c->buf + c->len, c->cap - c->len - 1 };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
		ssize_t n = recvmsg(c->sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			error_of(c, "connection closed by luod (%s)", n < 0 ? strerrorname_np(errno) : "EOF");
			epoll_ctl(ep, EPOLL_CTL_DEL, c->sock, NULL);
			return;
		}
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			int k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			int *fds = (int *)CMSG_DATA(cm);
			for (int i = 0; i < k; i++) {
				if (c->nfdq < MAX_QUEUED_FDS)
					c->fdq[c->nfdq++] = fds[i];
				else
					close(fds[i]);
			}
		}
		c->len += (size_t)n;
		size_t start = 0;
		for (char *nl; (nl = memchr(c->buf + start, '\n', c->len - start));) {
			*nl = 0;
			on_line(c, c->buf + start);
			start = (size_t)(nl - c->buf) + 1;
		}
		memmove(c->buf, c->buf + start, c->len - start);
		c->len -= start;
	}
}

/* A blocking connect (it waits while luod's backlog is full), then non-blocking in the epoll set.
 * Returns -1 with errno when the socket does not accept. */
static int connect_client(const char *id, int memfd)
{
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		die("socket");
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof a.sun_path, "%s", sock_path);
	if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
		int e = errno;
		close(s);
		errno = e;
		return -1;
	}
	if (nclients == cap_clients) {
		cap_clients = cap_clients ? cap_clients * 2 : 1024;
		clients = realloc(clients, sizeof *clients * (size_t)cap_clients);
		if (!clients)
			die("realloc");
	}
	int i = nclients++;
	struct client *c = &clients[i];
	memset(c, 0, sizeof *c);
	snprintf(c->id, sizeof c->id, "%s", id);
	c->sock = s;
	c->memfd = memfd;
	c->session = c->restored = -1;
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i + 1 };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev) < 0)
		die("epoll_ctl ADD");
	return i;
}

/* ---- the commands ----------------------------------------------------------------------- */

enum waiting { NONE, SUBSCRIBE, PREPARE, ABORTED, CLAIM, FINISH };
static enum waiting waiting;
static double cmd_t0, cmd_cpu0, spawn_t0, listening_at, connected_at, luod_cpu_listening, cpu_listening;
static int target, next_index, luod_pid, verified;
static char prefix[40];

static void reset_counters(void)
{
	answered = prepared = restored = finished_replies = starts = ready_replies = aborted = recreated = 0;
	first_start = last_ready_sent = last_ready_reply = last_aborted = first_claimed = preserve_ms = 0;
	nerrors = 0;
}

static void begin(void)
{
	reset_counters();
	cmd_t0 = now_ms();
	cmd_cpu0 = cpu_ms();
}

static double since(double t, double t0)
{
	return t ? t - t0 : -1;
}

static void print_errors(void)
{
	printf(",\"error_count\":%d,\"errors\":[", nerrors);
	for (int i = 0; i < nerrors && i < 5; i++) {
		printf("%s\"", i ? "," : "");
		for (const char *p = errors[i]; *p; p++) /* a JSON string: escape what luod's lines may hold */
			if (*p == '"' || *p == '\\')
				printf("\\%c", *p);
			else if ((unsigned char)*p < 0x20)
				printf("\\u%04x", *p);
			else
				putchar(*p);
		printf("\"");
	}
	printf("]");
}

static void reply_end(void)
{
	printf(",\"cpu_ms\":%.3f,\"recreated_memfds\":%d", cpu_ms() - cmd_cpu0, recreated);
	print_errors();
	printf("}\n");
	fflush(stdout);
	waiting = NONE;
}

static void subscribe_batch(void)
{
	int end = next_index + BATCH < target ? next_index + BATCH : target;
	for (; next_index < end; next_index++) {
		char id[64], line[128];
		snprintf(id, sizeof id, "%s-%d", prefix, next_index);
		int i = connect_client(id, make_memfd(id, bytes));
		if (i < 0)
			die("connect %s", sock_path);
		snprintf(line, sizeof line, "{\"cmd\":\"SUBSCRIBE\",\"id\":\"%s\"}\n", id);
		send_line(&clients[i], line);
	}
}

static void prepare_batch(void)
{
	int end = next_index + BATCH < nclients ? next_index + BATCH : nclients;
	for (; next_index < end; next_index++)
		send_line(&clients[next_index], "{\"cmd\":\"PREPARE\"}\n");
}

/* A process's CPU time (user + system of all its threads), ms; -1 if it cannot be read. */
static double proc_cpu_ms(int pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	char *p = strrchr(buf, ')'); /* the command name may hold spaces */
	unsigned long long ut, st;
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
}

/* A millisecond's wait for the luod we spawned to listen; ends the generator if luod ended. */
static void wait_for_luod(void)
{
	int st;
	if (waitpid(luod_pid, &st, WNOHANG) == luod_pid) {
		fprintf(stderr, "luod exited (status %d) before it listened\n", st);
		exit(1);
	}
	struct timespec ms = { 0, 1000000 };
	nanosleep(&ms, NULL);
}

/* Connects clients target-many, CLAIM on each at once; the first connect waits for the socket. */
static void claim_all(void)
{
	for (int k = 0; k < target; k++) {
		char id[64], line[128];
		snprintf(id, sizeof id, "%s-%d", prefix, k);
		int i;
		struct stat st;
		/* a stat until the socket file exists (cheaper than a socket + connect every ms) */
		while (k == 0 && luod_pid && stat(sock_path, &st) < 0 && errno == ENOENT)
			wait_for_luod();
		while ((i = connect_client(id, -1)) < 0) {
			if (k > 0 || (errno != ENOENT && errno != ECONNREFUSED))
				die("connect %s", sock_path);
			if (!luod_pid)
				die("connect %s", sock_path);
			wait_for_luod();
		}
		if (k == 0) {
			listening_at = now_ms();
			cpu_listening = cpu_ms();
			luod_cpu_listening = luod_pid ? proc_cpu_ms(luod_pid) : -1;
		}
		snprintf(line, sizeof line, "{\"cmd\":\"CLAIM\",\"id\":\"%s\"}\n", id);
		send_line(&clients[i], line);
	}
	connected_at = now_ms();
}

static void spawn_luod(const char *log, char **argv)
{
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	/* luod gets SIGPIPE's default back (ignored here) */
	posix_spawnattr_t at;
	sigset_t def;
	posix_spawnattr_init(&at);
	sigemptyset(&def);
	sigaddset(&def, SIGPIPE);
	posix_spawnattr_setsigdefault(&at, &def);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGDEF);
	extern char **environ;
	spawn_t0 = now_ms();
	int e = posix_spawn(&luod_pid, argv[0], &fa, &at, argv, environ);
	if (e) {
		errno = e;
		die("spawning %s", argv[0]);
	}
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
}

/* Answers the waiting command once its condition holds. */
static void check_waiting(void)
{
	double now = now_ms();
	switch (waiting) {
	case NONE:
		return;
	case SUBSCRIBE:
	case PREPARE:
		if (answered < next_index)
			break;
		if (next_index < target) {
			if (waiting == SUBSCRIBE)
				subscribe_batch();
			else
				prepare_batch();
			break;
		}
		printf("{\"ok\":%s,\"ms\":%.3f,\"clients\":%d", nerrors ? "false" : "true", now - cmd_t0, waiting == SUBSCRIBE ? target : prepared);
		reply_end();
		return;
	case ABORTED:
		if (aborted < nclients)
			break;
		printf("{\"ok\":%s,\"starts\":%d,\"ready_replies\":%d,\"first_start_ms\":%.3f,\"last_ready_sent_ms\":%.3f,"
			"\"last_ready_reply_ms\":%.3f,\"last_aborted_ms\":%.3f,\"preserve_ms_total\":%.3f",
			nerrors ? "false" : "true", starts, ready_replies, since(first_start, cmd_t0), since(last_ready_sent, cmd_t0),
			since(last_ready_reply, cmd_t0), since(last_aborted, cmd_t0), preserve_ms);
		reply_end();
		return;
	case CLAIM: {
		if (answered < target)
			break;
		double t0 = luod_pid ? spawn_t0 : cmd_t0;
		printf("{\"ok\":%s,\"n\":%d,\"held\":%d,\"luod_pid\":%d,\"listening_ms\":%.3f,\"all_connected_ms\":%.3f,"
			"\"first_claimed_ms\":%.3f,\"all_held_ms\":%.3f,\"claims_ms\":%.3f",
			nerrors ? "false" : "true", target, restored, luod_pid, listening_at - t0, connected_at - t0,
			since(first_claimed, t0), now - t0, now - listening_at);
		/* the CPU from the socket accepting on, apart from the polling before (cpu_ms: both);
		 * luod's (10 ms ticks) from its spawn to listening, and over the claims */
		printf(",\"cpu_claims_ms\":%.3f", cpu_ms() - cpu_listening);
		if (luod_pid)
			printf(",\"luod_cpu_start_ms\":%.0f,\"luod_cpu_claims_ms\":%.0f", luod_cpu_listening, proc_cpu_ms(luod_pid) - luod_cpu_listening);
		reply_end();
		return;
	}
	case FINISH:
		if (finished_replies < target)
			break;
		printf("{\"ok\":%s,\"verified\":%d,\"ms\":%.3f", nerrors ? "false" : "true", verified, now - cmd_t0);
		reply_end();
		return;
	}
	if (now - cmd_t0 > COMMAND_TIMEOUT_MS) {
		printf("{\"ok\":false,\"timeout\":true,\"answered\":%d", answered);
		reply_end();
	}
}

static void finish_all(void)
{
	int good = 0;
	for (int i = 0; i < nclients; i++) {
		struct client *c = &clients[i];
		char line[128];
		if (c->restored >= 0 && (!luo || check_stamp(c->restored, c->id)))
			good++;
		else
			error_of(c, "restored memfd missing or with the wrong content");
		if (luo && c->session >= 0 && luo_finish(c->session) < 0)
			error_of(c, "FINISH: %s", strerrorname_np(errno));
		if (c->session >= 0)
			close(c->session);
		if (c->restored >= 0)
			close(c->restored);
		c->session = c->restored = -1;
		snprintf(line, sizeof line, "{\"cmd\":\"FINISHED\",\"id\":\"%s\"}\n", c->id);
		send_line(c, line);
	}
	verified = good;
	target = nclients;
}

static void close_all(void)
{
	for (int i = 0; i < nclients; i++) {
		struct client *c = &clients[i];
		send_line(c, "{\"cmd\":\"UNSUBSCRIBE\"}\n");
		close(c->sock); /* after the UNSUBSCRIBE: luod reads it, then the end of file */
		int fds[] = { c->memfd, c->session, c->restored };
		for (int k = 0; k < 3; k++)
			if (fds[k] >= 0)
				close(fds[k]);
		for (int k = 0; k < c->nfdq; k++)
			close(c->fdq[k]);
		free(c->buf);
	}
	nclients = 0;
}

static void command(char *line)
{
	char *argv[64];
	int argc = 0;
	for (char *t = strtok(line, " "); t && argc < 63; t = strtok(NULL, " "))
		argv[argc++] = t;
	argv[argc] = NULL;
	if (argc == 0)
		return;
	/* every command measures from its arrival, except "aborted": the round runs from "round" */
	if (strcmp(argv[0], "aborted"))
		begin();
	if (!strcmp(argv[0], "subscribe") && argc == 3) {
		snprintf(prefix, sizeof prefix, "%s", argv[1]);
		target = atoi(argv[2]);
		next_index = 0;
		waiting = SUBSCRIBE;
		subscribe_batch();
	} else if (!strcmp(argv[0], "prepare")) {
		target = nclients;
		next_index = 0;
		waiting = PREPARE;
		prepare_batch();
	} else if (!strcmp(argv[0], "round")) {
		printf("{\"ok\":true}\n");
		fflush(stdout);
	} else if (!strcmp(argv[0], "aborted")) {
		waiting = ABORTED;
	} else if ((!strcmp(argv[0], "claim") && argc == 3) || (!strcmp(argv[0], "restore") && argc >= 5)) {
		snprintf(prefix, sizeof prefix, "%s", argv[1]);
		target = atoi(argv[2]);
		luod_pid = 0;
		if (argv[0][0] == 'r')
			spawn_luod(argv[3], argv + 4);
		claim_all();
		waiting = CLAIM;
	} else if (!strcmp(argv[0], "finish")) {
		finish_all();
		waiting = FINISH;
	} else if (!strcmp(argv[0], "close")) {
		close_all();
		printf("{\"ok\":true}\n");
		fflush(stdout);
	} else {
		printf("{\"ok\":false,\"error\":\"unknown command\"}\n");
		fflush(stdout);
	}
}

int main(int argc, char **argv)
{
	if (argc < 3 || (argc == 4 && strcmp(argv[3], "--no-luo")) || argc > 4) {
		fprintf(stderr, "usage: luo-swarm SOCKET BYTES [--no-luo]\n");
		return 2;
	}
	sock_path = argv[1];
	bytes = (size_t)atol(argv[2]);
	luo = argc < 4;
	signal(SIGPIPE, SIG_IGN);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = 0 };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev) < 0)
		die("epoll_ctl ADD stdin");
	char cmd[4096];
	size_t cmdlen = 0;
	int eof = 0;
	struct epoll_event evs[256];
	for (;;) {
		/* the commands in order, each once the one before it was answered */
		char *nl;
		while (waiting == NONE && (nl = memchr(cmd, '\n', cmdlen))) {
			*nl = 0;
			command(cmd);
			size_t used = (size_t)(nl - cmd) + 1;
			memmove(cmd, nl + 1, cmdlen - used);
			cmdlen -= used;
			check_waiting();
		}
		if (eof && waiting == NONE)
			return 0; /* the bench is done with us */
		int n = epoll_wait(ep, evs, 256, waiting == NONE ? -1 : 100);
		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		for (int k = 0; k < n; k++) {
			uint32_t i = evs[k].data.u32;
			if (i) {
				on_readable(&clients[i - 1]);
				continue;
			}
			ssize_t r = read(0, cmd + cmdlen, sizeof cmd - 1 - cmdlen);
			if (r <= 0) {
				eof = 1;
				epoll_ctl(ep, EPOLL_CTL_DEL, 0, NULL);
				continue;
			}
			cmdlen += (size_t)r;
		}
		check_waiting();
	}
}
