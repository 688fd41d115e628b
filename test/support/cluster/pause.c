/*
 * The pod sandbox ("pause") process of the cluster tier: no image can be pulled here, so
 * setup-cluster.sh compiles this statically and packages it FROM scratch. It holds the pod's
 * namespaces, reaps orphaned children (it is PID 1 of the pod) and exits on SIGTERM/SIGINT.
 */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) { (void)sig; _exit(0); }
static void on_child(int sig) {
  (void)sig;
  while (waitpid(-1, 0, WNOHANG) > 0) {}
}

int main(void) {
  struct sigaction stop = {0}, child = {0};
  stop.sa_handler = on_stop;
  child.sa_handler = on_child;
  child.sa_flags = SA_NOCLDSTOP;
  sigaction(SIGTERM, &stop, 0);
  sigaction(SIGINT, &stop, 0);
  sigaction(SIGCHLD, &child, 0);
  for (;;) pause();
}
