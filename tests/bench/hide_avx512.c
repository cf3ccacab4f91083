/* Hide AVX-512, AVX-VNNI and AMX from a process, so that its libraries pick the kernels a CPU
 * without them runs (XNNPACK in LiteRT, MLAS in onnxruntime, numpy's SIMD dispatch), while every
 * other instruction still runs natively on this CPU.
 *
 * Loaded with LD_PRELOAD, it turns on the kernel's CPUID faulting for the process
 * (arch_prctl(ARCH_SET_CPUID, 0): each CPUID instruction then raises SIGSEGV; needs the CPU flag
 * `cpuid_fault`), and answers each CPUID from a SIGSEGV handler: the real answer, with the feature
 * bits of leaf 7 cleared. The setting survives fork and clone and is reset by execve, where the
 * preload runs again. Libraries read these bits once at start-up, so the handler's cost is nil.
 * glibc reads CPUID before any preload runs: GLIBC_TUNABLES hides the same features from its own
 * string functions (tests/bench/hidden_cpu_features.py sets both).
 *
 * Build: gcc -O2 -shared -fPIC -o hide_avx512.so hide_avx512.c
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

/* Leaf 7, subleaf 0. EBX: AVX512F 16, DQ 17, IFMA 21, PF 26, ER 27, CD 28, BW 30, VL 31. */
#define HIDDEN_7_0_EBX ((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) \
                        | (1u << 30) | (1u << 31))
/* ECX: AVX512_VBMI 1, VBMI2 6, VNNI 11, BITALG 12, VPOPCNTDQ 14. */
#define HIDDEN_7_0_ECX ((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14))
/* EDX: AVX512_4VNNIW 2, 4FMAPS 3, VP2INTERSECT 8, AMX_BF16 22, AVX512_FP16 23, AMX_TILE 24, AMX_INT8 25. */
#define HIDDEN_7_0_EDX ((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) | (1u << 25))
/* Leaf 7, subleaf 1. EAX: AVX_VNNI 4, AVX512_BF16 5, AVX_IFMA 23. */
#define HIDDEN_7_1_EAX ((1u << 4) | (1u << 5) | (1u << 23))

static long set_cpuid_enabled(int enabled) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, enabled); }

static void answer_cpuid(int sig, siginfo_t *info, void *context) {
    (void)info;
    greg_t *regs = ((ucontext_t *)context)->uc_mcontext.gregs;
    const uint8_t *ip = (const uint8_t *)regs[REG_RIP];
    if (ip[0] != 0x0f || ip[1] != 0xa2) {
        /* A real fault: let it take its default course when the instruction runs again. */
        signal(sig, SIG_DFL);
        return;
    }
    uint32_t leaf = (uint32_t)regs[REG_RAX], subleaf = (uint32_t)regs[REG_RCX], a, b, c, d;
    set_cpuid_enabled(1);
    __cpuid_count(leaf, subleaf, a, b, c, d);
    set_cpuid_enabled(0);
    if (leaf == 7 && subleaf == 0) {
        b &= ~HIDDEN_7_0_EBX;
        c &= ~HIDDEN_7_0_ECX;
        d &= ~HIDDEN_7_0_EDX;
    } else if (leaf == 7 && subleaf == 1) {
        a &= ~HIDDEN_7_1_EAX;
    }
    regs[REG_RAX] = a;
    regs[REG_RBX] = b;
    regs[REG_RCX] = c;
    regs[REG_RDX] = d;
    regs[REG_RIP] += 2;
}

__attribute__((constructor)) static void hide_features(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = answer_cpuid;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &action, NULL);
    set_cpuid_enabled(0);
}
