// uringsend: the CPU of sending one small frame to each of CONNS loopback TCP
// connections, as the live hub's writer shards do for an event: one send(2) per
// connection (MSG_DONTWAIT, as web/live's sendNow) against io_uring IORING_OP_SEND
// batches of BATCH requests per io_uring_enter (plain descriptors, and registered
// files with IOSQE_FIXED_FILE). The three alternate round by round; receivers are
// drained between rounds, outside the timed part. Reported per send: the sending
// thread's CPU, the process's, the ksoftirqd threads' (10 ms ticks: the receive
// softirq work the kernel defers to them) and wall time.
// See docs/BENCHMARKS.md, "Live channel", "io_uring sends".
//
//   gcc -O2 -o /tmp/uringsend docs/uringsend.c
//   /tmp/uringsend CONNS ROUNDS FRAMEBYTES PORT [MODE [BATCH]]
//
// MODE -1 (default) runs all three, 0 send(2) only, 1 io_uring, 2 io_uring+fixed
// (for perf record); BATCH is the ring's size (default 1024). Needs 2*CONNS+10 fds.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int n, rounds, flen;
static int *srv, *cli;
static char *frame;

struct ring {
	int fd;
	unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
	unsigned *cq_head, *cq_tail, *cq_mask;
	struct io_uring_sqe *sqes;
	struct io_uring_cqe *cqes;
	unsigned entries;
};

static int ring_init(struct ring *r, unsigned entries, unsigned flags) {
	struct io_uring_params p;
	memset(&p, 0, sizeof p);
	p.flags = flags;
	r->fd = syscall(__NR_io_uring_setup, entries, &p);
	if (r->fd < 0) { perror("io_uring_setup"); return -1; }
	size_t sqsz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	size_t cqsz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	if (cqsz > sqsz) sqsz = cqsz;
	char *sq = mmap(0, sqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING);
	if (sq == MAP_FAILED) { perror("mmap"); return -1; }
	char *cq = sq; // IORING_FEAT_SINGLE_MMAP
	r->sq_head = (unsigned *)(sq + p.sq_off.head);
	r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
	r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
	r->sq_array = (unsigned *)(sq + p.sq_off.array);
	r->cq_head = (unsigned *)(cq + p.cq_off.head);
	r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
	r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
	r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
	r->sqes = mmap(0, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
	if (r->sqes == MAP_FAILED) { perror("mmap sqes"); return -1; }
	r->entries = p.sq_entries;
	for (unsigned i = 0; i < p.sq_entries; i++) r->sq_array[i] = i;
	return 0;
}

static double now(clockid_t c) {
	struct timespec ts;
	clock_gettime(c, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void drain(void) {
	char buf[4096];
	for (int i = 0; i < n; i++) {
		for (;;) {
			ssize_t k = recv(cli[i], buf, sizeof buf, MSG_DONTWAIT);
			if (k <= 0) break;
		}
	}
}

static long short_or_err;

// ksoft is the CPU ns (utime+stime, in 10 ms ticks) of all ksoftirqd threads.
static double ksoft(void) {
	DIR *d = opendir("/proc");
	struct dirent *e;
	double t = 0;
	char p[300], b[512];
	while ((e = readdir(d))) {
		snprintf(p, sizeof p, "/proc/%s/stat", e->d_name);
		FILE *f = fopen(p, "r");
		if (!f)
			continue;
		if (fgets(b, sizeof b, f) && strstr(b, "(ksoftirqd/")) {
			char *q = strrchr(b, ')') + 2; // field 3, state
			unsigned long ut, st;
			for (int i = 0; i < 11; i++)
				q = strchr(q, ' ') + 1; // to field 14, utime
			sscanf(q, "%lu %lu", &ut, &st);
			t += (ut + st) * 1e7;
		}
		fclose(f);
	}
	closedir(d);
	return t;
}

// selfcpu is the process's CPU ns, all threads.
static double selfcpu(void) {
	struct rusage u;
	getrusage(RUSAGE_SELF, &u);
	return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e9 + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e3;
}

static void round_send(void) {
	for (int i = 0; i < n; i++) {
		ssize_t k = send(srv[i], frame, flen, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (k != flen) short_or_err++;
	}
}

static void round_uring(struct ring *r, int fixed) {
	int i = 0;
	while (i < n) {
		unsigned tail = *r->sq_tail, batch = 0;
		while (i < n && batch < r->entries) {
			struct io_uring_sqe *s = &r->sqes[tail & *r->sq_mask];
			memset(s, 0, sizeof *s);
			s->opcode = IORING_OP_SEND;
			s->fd = fixed ? i : srv[i];
			s->flags = fixed ? IOSQE_FIXED_FILE : 0;
			s->addr = (unsigned long)frame;
			s->len = flen;
			s->msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL;
			s->user_data = i;
			tail++, batch++, i++;
		}
		__atomic_store_n(r->sq_tail, tail, __ATOMIC_RELEASE);
		int got = syscall(__NR_io_uring_enter, r->fd, batch, 0, 0, NULL, 0);
		if (got != (int)batch) { fprintf(stderr, "enter %d of %u: %s\n", got, batch, strerror(errno)); exit(1); }
		unsigned head = *r->cq_head, ctail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
		unsigned seen = 0;
		for (; head != ctail; head++, seen++) {
			struct io_uring_cqe *c = &r->cqes[head & *r->cq_mask];
			if (c->res != flen) short_or_err++;
		}
		__atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
		if (seen != batch) { fprintf(stderr, "completions %u of %u inline\n", seen, batch); exit(1); }
	}
}

int main(int argc, char **argv) {
	n = atoi(argv[1]), rounds = atoi(argv[2]), flen = atoi(argv[3]);
	int port = atoi(argv[4]);
	frame = malloc(flen);
	memset(frame, 'x', flen);
	srv = calloc(n, sizeof(int)), cli = calloc(n, sizeof(int));
	int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(l, (void *)&a, sizeof a) || listen(l, 4096)) { perror("listen"); return 1; }
	for (int i = 0; i < n; i++) {
		cli[i] = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(cli[i], (void *)&a, sizeof a)) { perror("connect"); return 1; }
		srv[i] = accept(l, 0, 0);
		if (srv[i] < 0) { perror("accept"); return 1; }
		setsockopt(srv[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); // as Go sets
		fcntl(srv[i], F_SETFL, O_NONBLOCK);
	}
	struct ring plain, fixed;
	unsigned fl = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN;
	int mode = argc > 5 ? atoi(argv[5]) : -1, batch = argc > 6 ? atoi(argv[6]) : 1024;
	if (ring_init(&plain, batch, fl) || ring_init(&fixed, batch, fl))
		return 1;
	if (syscall(__NR_io_uring_register, fixed.fd, IORING_REGISTER_FILES, srv, n) < 0) { perror("register files"); return 1; }
	const char *names[] = {"send(2)", "io_uring", "io_uring+fixed"};
	double cpu[3] = {0}, wall[3] = {0}, proc[3] = {0}, ks[3] = {0};
	for (int k = 0; k < 3; k++) { // warm-up
		for (int r = 0; r < 5; r++) { if (k == 0) round_send(); else round_uring(k == 1 ? &plain : &fixed, k == 2); drain(); }
	}
	short_or_err = 0;
	for (int r = 0; r < rounds; r++) {
		for (int k0 = 0; k0 < 3; k0++) {
			int k = (k0 + r) % 3;
			if (mode >= 0 && k != mode)
				continue;
			double c0 = now(CLOCK_THREAD_CPUTIME_ID), w0 = now(CLOCK_MONOTONIC), p0 = selfcpu(), k0s = ksoft();
			if (k == 0) round_send(); else round_uring(k == 1 ? &plain : &fixed, k == 2);
			cpu[k] += now(CLOCK_THREAD_CPUTIME_ID) - c0, wall[k] += now(CLOCK_MONOTONIC) - w0, proc[k] += selfcpu() - p0, ks[k] += ksoft() - k0s;
			drain();
		}
	}
	double sends = (double)n * rounds;
	for (int k = 0; k < 3; k++)
		printf("%-15s %7.1f ns thread CPU per send  %7.1f process  %7.1f ksoftirqd (10 ms ticks)  %7.1f ns wall\n", names[k], cpu[k] / sends, proc[k] / sends, ks[k] / sends, wall[k] / sends);
	printf("short or failed sends: %ld\n", short_or_err);
	return 0;
}
