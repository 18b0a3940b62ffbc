/* Minimal C VMM loop for bench/kvm.ts: a real-mode guest doing `out dx, al`
 * forever. It stays up and reads run lengths from stdin, one per line: for
 * each it runs that many exits and prints the mean ns per exit (wall
 * clock, then this thread's CPU time), so the
 * bench can alternate it with the TypeScript loop in short runs without a
 * process start in between. Per exit it does what the engine's VcpuLoop
 * does: check the stop and pause words, KVM_RUN, retry on EINTR/EAGAIN,
 * read the exit reason and the io fields, and dispatch each port write to
 * a handler through a pointer. The baseline VcpuLoop is compared against. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>

#define die(m) do { perror(m); return 1; } while (0)

struct handlers {
  void (*io_out)(uint16_t port, uint8_t size, uint32_t value);
  uint32_t (*io_in)(uint16_t port, uint8_t size);
};

static long outs;
static void io_out(uint16_t port, uint8_t size, uint32_t value) { (void)size; (void)value; if (port == 0x500) outs++; }
static uint32_t io_in(uint16_t port, uint8_t size) { (void)port; (void)size; return 0xff; }

/* a global with external linkage, as a VMM's device table: the compiler
 * cannot turn the handler call into a direct one */
struct handlers handlers;

/* stop and pause words, as the engine's shared control array */
static int ctl[2];

__attribute__((noinline)) static int run_exits(int vcpu, struct kvm_run *run, const struct handlers *h, long n) {
  for (long done = 0; done < n;) {
    if (__atomic_load_n(&ctl[0], __ATOMIC_SEQ_CST)) return 0;
    if (__atomic_load_n(&ctl[1], __ATOMIC_SEQ_CST)) continue;
    if (ioctl(vcpu, KVM_RUN, 0) < 0) {
      if (errno == EINTR) { run->immediate_exit = 0; continue; }
      if (errno == EAGAIN) continue;
      return -1;
    }
    done++;
    if (run->exit_reason == KVM_EXIT_IO) {
      uint8_t *p = (uint8_t *)run + run->io.data_offset;
      for (uint32_t i = 0; i < run->io.count; i++, p += run->io.size) {
        if (run->io.direction == KVM_EXIT_IO_OUT) {
          uint32_t v = run->io.size == 1 ? *p : run->io.size == 2 ? *(uint16_t *)p : *(uint32_t *)p;
          h->io_out(run->io.port, run->io.size, v);
        } else {
          uint32_t v = h->io_in(run->io.port, run->io.size);
          if (run->io.size == 1) *p = (uint8_t)v;
          else if (run->io.size == 2) *(uint16_t *)p = (uint16_t)v;
          else *(uint32_t *)p = v;
        }
      }
    } else {
      fprintf(stderr, "unexpected exit %u\n", run->exit_reason);
      return -1;
    }
  }
  return 0;
}

int main(void) {
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("open /dev/kvm");
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) die("KVM_CREATE_VM");
  size_t memsz = 0x10000;
  uint8_t *mem = mmap(NULL, memsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) die("mmap");
  const uint8_t code[] = { 0xba, 0x00, 0x05, 0xee, 0xeb, 0xfd }; /* mov dx,0x500; l: out dx,al; jmp l */
  memcpy(mem + 0x1000, code, sizeof code);
  struct kvm_userspace_memory_region r = { .slot = 0, .guest_phys_addr = 0, .memory_size = memsz, .userspace_addr = (uint64_t)mem };
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) die("KVM_SET_USER_MEMORY_REGION");
  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) die("KVM_CREATE_VCPU");
  int runsz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  struct kvm_run *run = mmap(NULL, runsz, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  if (run == MAP_FAILED) die("mmap kvm_run");
  struct kvm_sregs s;
  if (ioctl(vcpu, KVM_GET_SREGS, &s) < 0) die("KVM_GET_SREGS");
  s.cs.base = 0; s.cs.selector = 0;
  if (ioctl(vcpu, KVM_SET_SREGS, &s) < 0) die("KVM_SET_SREGS");
  struct kvm_regs regs = { .rip = 0x1000, .rflags = 2 };
  if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
  handlers.io_out = io_out; handlers.io_in = io_in;
  long n;
  while (scanf("%ld", &n) == 1) {
    long before = outs;
    struct timespec a, b, ca, cb;
    clock_gettime(CLOCK_MONOTONIC, &a);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ca);
    if (run_exits(vcpu, run, &handlers, n) < 0) die("KVM_RUN");
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cb);
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (outs - before < n) { fprintf(stderr, "guest loop ended\n"); return 1; }
    double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
    double cpu = (cb.tv_sec - ca.tv_sec) * 1e9 + (cb.tv_nsec - ca.tv_nsec);
    printf("%.1f %.1f\n", ns / n, cpu / n);
    fflush(stdout);
  }
  return 0;
}
