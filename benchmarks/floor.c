/* The floor of forwarding on this machine: CPU per 1200-byte datagram sent to N loopback receivers.

   benchmarks/floor.py compiles and runs it: `floor <receivers> <datagrams> [batch]` prints the
   sender's CPU microseconds per datagram, sent with a sendto each, or with sendmmsg `batch` at a
   time (as sfu/_fanout.c sends a fan-out). A forked child drains every receiver (its CPU is not counted: on
   loopback the delivery into the receiver's queue is charged to the sender, as it would be to a
   server). Written in C so that it measures the kernel, not an interpreter. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static double cpu_seconds(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
           (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

int main(int argc, char **argv) {
    int receivers = argc > 1 ? atoi(argv[1]) : 50;
    long datagrams = argc > 2 ? atol(argv[2]) : 200000;
    if (receivers < 1 || receivers > 1000 || datagrams < 1) return 2;
    int *sinks = calloc(receivers, sizeof(int));
    struct sockaddr_in *to = calloc(receivers, sizeof(struct sockaddr_in));
    for (int i = 0; i < receivers; i++) {
        sinks[i] = socket(AF_INET, SOCK_DGRAM, 0);
        int size = 4 << 20;
        setsockopt(sinks[i], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
        to[i].sin_family = AF_INET;
        to[i].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(sinks[i], (struct sockaddr *)&to[i], sizeof to[i]) != 0) return 3;
        socklen_t length = sizeof to[i];
        getsockname(sinks[i], (struct sockaddr *)&to[i], &length);
    }
    pid_t drain = fork();
    if (drain == 0) {
        struct pollfd *fds = calloc(receivers, sizeof(struct pollfd));
        for (int i = 0; i < receivers; i++) fds[i] = (struct pollfd){.fd = sinks[i], .events = POLLIN};
        char buffer[2048];
        for (;;) {
            if (poll(fds, receivers, 1000) <= 0) continue;
            for (int i = 0; i < receivers; i++)
                while (fds[i].revents & POLLIN && recv(sinks[i], buffer, sizeof buffer, MSG_DONTWAIT) > 0) {
                }
        }
    }
    int out = socket(AF_INET, SOCK_DGRAM, 0);
    char packet[1200];
    memset(packet, 0x5a, sizeof packet);
    double start = cpu_seconds();
    int batch = argc > 3 ? atoi(argv[3]) : 0;
    if (batch < 0 || batch > 1024) return 2;
    struct mmsghdr *messages = calloc(batch ? batch : 1, sizeof *messages);
    struct iovec vector = {.iov_base = packet, .iov_len = sizeof packet};
    for (long n = 0; n < datagrams;) {
        if (!batch) {
            sendto(out, packet, sizeof packet, 0, (struct sockaddr *)&to[n++ % receivers], sizeof to[0]);
            continue;
        }
        int k = 0;
        for (; k < batch && n + k < datagrams; k++)
            messages[k].msg_hdr = (struct msghdr){.msg_name = &to[(n + k) % receivers],
                                                  .msg_namelen = sizeof to[0], .msg_iov = &vector, .msg_iovlen = 1};
        sendmmsg(out, messages, k, 0);
        n += k;
    }
    double spent = cpu_seconds() - start;
    kill(drain, SIGKILL);
    waitpid(drain, NULL, 0);
    printf("%.3f\n", spent / datagrams * 1e6);
    return 0;
}
