/* A UDP echo server for the test image (busybox's nc has no UDP in Debian's build): answers
 * every datagram on the given port with "<hostname> <datagram>", so a test can tell which pod
 * answered. Built static by tests/cluster/testbed. */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 53;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("udp-echo");
        return 1;
    }
    char host[64] = "?";
    gethostname(host, sizeof host - 1);
    for (;;) {
        char in[1024], out[1200];
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        ssize_t n = recvfrom(fd, in, sizeof in, 0, (struct sockaddr *)&peer, &len);
        if (n < 0) continue;
        int m = snprintf(out, sizeof out, "%s %.*s", host, (int)n, in);
        sendto(fd, out, (size_t)m, 0, (struct sockaddr *)&peer, len);
    }
}
