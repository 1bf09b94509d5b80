/* LD_PRELOAD shim: the process sees a CPU with AVX2 and FMA, without AVX-512, AMX or VNNI.

   Built and used by bench/cpu_mask.py. At load, CPUID is made to fault in this thread and every
   thread and fork started after (Linux arch_prctl ARCH_SET_CPUID 0, on CPUs with CPUID faulting;
   exec resets it, and LD_PRELOAD loads the shim again). The SIGSEGV handler runs the real CPUID with
   faulting off for that one instruction, clears the feature bits below and steps over the
   instruction. Any other SIGSEGV goes to the handler that was there before. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>
#include <asm/prctl.h>
#include <sys/syscall.h>

#define BIT(n) (1u << (n))

static struct sigaction previous;

static void real_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
  syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
  __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
  syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
}

static void mask(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
  if (leaf == 7 && sub == 0) {
    /* EBX: AVX512F, AVX512DQ, AVX512_IFMA, AVX512PF, AVX512ER, AVX512CD, AVX512BW, AVX512VL */
    r[1] &= ~(BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31));
    /* ECX: AVX512_VBMI, AVX512_VBMI2, AVX512_VNNI, AVX512_BITALG, AVX512_VPOPCNTDQ */
    r[2] &= ~(BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14));
    /* EDX: AVX512_4VNNIW, AVX512_4FMAPS, AVX512_VP2INTERSECT, AMX_BF16, AVX512_FP16, AMX_TILE, AMX_INT8 */
    r[3] &= ~(BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25));
  } else if (leaf == 7 && sub == 1) {
    /* EAX: AVX_VNNI, AVX512_BF16, AMX_FP16, AVX_IFMA */
    r[0] &= ~(BIT(4) | BIT(5) | BIT(21) | BIT(23));
  } else if (leaf == 0xd && sub == 0) {
    /* EAX, the XSAVE state components: opmask, ZMM_Hi256, Hi16_ZMM, AMX XTILECFG and XTILEDATA */
    r[0] &= ~(BIT(5) | BIT(6) | BIT(7) | BIT(17) | BIT(18));
  }
}

static void handler(int sig, siginfo_t *info, void *context) {
  (void)info;
  greg_t *registers = ((ucontext_t *)context)->uc_mcontext.gregs;
  unsigned char *ip = (unsigned char *)registers[REG_RIP];
  if (ip[0] == 0x0f && ip[1] == 0xa2) { /* CPUID */
    uint32_t leaf = (uint32_t)registers[REG_RAX], sub = (uint32_t)registers[REG_RCX], r[4];
    real_cpuid(leaf, sub, r);
    mask(leaf, sub, r);
    registers[REG_RAX] = r[0];
    registers[REG_RBX] = r[1];
    registers[REG_RCX] = r[2];
    registers[REG_RDX] = r[3];
    registers[REG_RIP] += 2;
    return;
  }
  sigaction(sig, &previous, NULL); /* a real fault: let the previous handler (or the default) have it */
  raise(sig);
}

__attribute__((constructor)) static void start(void) {
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_sigaction = handler;
  action.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigaction(SIGSEGV, &action, &previous);
  syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
}
