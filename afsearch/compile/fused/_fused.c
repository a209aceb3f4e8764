/* Fused element-wise activation kernels for afsearch (CPU, float32).
 *
 * A candidate activation is lowered (afsearch/compile/fused.py) to a small register program:
 * register 0 is the input x, registers 1..n_fixed hold constants and trainable constants
 * (broadcast), and instruction i writes register n_fixed + 1 + i. The interpreter runs the
 * whole program over a block of BLOCK elements at a time, so every intermediate lives in L1
 * instead of one full-size tensor per torch op; each instruction is one `omp simd` loop.
 *
 * The forward pass computes values only. The backward pass recomputes the values its sweep
 * reads and then runs a reverse sweep with the same local derivative formulas, in the same
 * operation order, as torch's autograd uses for the ops in each primitive's torch template
 * (see the comments per op), so gradients, ties, kinks and NaN/inf propagation agree with the
 * eager module. Gradients of trainable constants are summed per block in double and the block
 * partials are added in block order after the parallel region, so every result is bitwise
 * independent of the thread count.
 *
 * Numerics. Transcendentals are evaluated in double with glibc's vector math library (libmvec,
 * declared `simd` below so the loops vectorise) and rounded once to float: correctly rounded,
 * which torch's float32 functions are in ~99% of cases (libmvec's own float variants are not,
 * and one-ulp differences get amplified in the cancellations random formulas are full of).
 * Where torch's kernels call SLEEF's float exp (sigmoid, silu, softplus, ...), V_EXP below is
 * the same algorithm and gives the same bits. Products are rounded separately
 * (-ffp-contract=off) except where torch's own compiled kernels contract them into an fma,
 * written out as fmaf. No errno (-fno-math-errno) and no trapping math (-fno-trapping-math)
 * let gcc vectorise; never build this with -ffast-math: NaN comparisons, signed zeros and
 * denormals must behave as in torch.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

/* Vector variants exist in libmvec (x86_64 glibc >= 2.35 for all of these). Without the
 * attribute gcc calls the scalar function per element and the kernels are slower than eager
 * torch; fused.py refuses a library that does not reference any _ZGV* symbol. */
#define AFS_SIMD __attribute__((simd("notinbranch")))
AFS_SIMD double exp(double);
AFS_SIMD double expm1(double);
AFS_SIMD double log(double);
AFS_SIMD double log1p(double);
AFS_SIMD double sin(double);
AFS_SIMD double cos(double);
AFS_SIMD double sinh(double);
AFS_SIMD double cosh(double);
AFS_SIMD double tanh(double);
AFS_SIMD double asinh(double);
AFS_SIMD double atan(double);
AFS_SIMD double erf(double);
AFS_SIMD double erfc(double);
AFS_SIMD double pow(double, double);
#define M_EXP(x) ((float)exp((double)(x)))
#define M_EXPM1(x) ((float)expm1((double)(x)))
#define M_LOG(x) ((float)log((double)(x)))
#define M_LOG1P(x) ((float)log1p((double)(x)))
#define M_SIN(x) ((float)sin((double)(x)))
#define M_COS(x) ((float)cos((double)(x)))
#define M_SINH(x) ((float)sinh((double)(x)))
#define M_COSH(x) ((float)cosh((double)(x)))
#define M_TANH(x) ((float)tanh((double)(x)))
#define M_ASINH(x) ((float)asinh((double)(x)))
#define M_ATAN(x) ((float)atan((double)(x)))
#define M_ERF(x) ((float)erf((double)(x)))
#define M_ERFC(x) ((float)erfc((double)(x)))
#define M_POW(x, y) ((float)pow((double)(x), (double)(y)))

#define AFS_ABI 3
/* 256 floats = 1 KiB per register: values and adjoints of a typical 10-30 instruction
 * program stay inside a 48 KiB L1 data cache. */
/* the numeric guards of afsearch.expr.primitives (EPS, EXP_CLAMP): fused.py passes them with -D,
 * so the kernel and the torch templates share one definition */
#if !defined(AFS_EPS) || !defined(AFS_EXP_CLAMP)
#error "compile with -DAFS_EPS=... -DAFS_EXP_CLAMP=... (see afsearch/compile/fused.py)"
#endif

#ifndef BLOCK
#define BLOCK 256
#endif
/* below this many elements in total, one thread: waking the OpenMP team costs more than the
 * work it would share */
#define MIN_PARALLEL 32768

/* X-macro: the op list, in opcode order. fused.py reads the names back (afs_op_name) and
 * refuses a library whose list differs from its own. */
#define AFS_OPS(X) \
    X(ID) X(NEG) X(ABS) X(SQUARE) X(CUBE) X(SQRT) X(LOG) X(EXP) X(SIN) X(COS) X(SINH)   \
    X(COSH) X(TANH) X(ASINH) X(ATAN) X(SINC) X(RELU) X(SIGMOID) X(SOFTPLUS) X(GAUSS)    \
    X(ERF) X(ERFC) X(RDIV) X(EXPM1) X(LOG_SIGMOID) X(ELU) X(SILU) X(SOFTSIGN)           \
    X(HARD_SIGMOID) X(MISH) X(GELU) X(LEAKY_RELU) X(CLAMP) X(HARDSWISH) X(ADD) X(SUB)   \
    X(MUL) X(DIV) X(MAX) X(MIN) X(POW) X(POWC) X(SLOG) X(SSQRT)

#define AFS_ENUM(name) OP_##name,
#define AFS_NAME(name) #name,
enum { AFS_OPS(AFS_ENUM) OP_COUNT };
static const char *const op_names[] = { AFS_OPS(AFS_NAME) };

/* One program. code: n_instr rows of (op, a, b, flags); flags bits 0-1 and 2-3 say how the
 * instruction's gradient reaches operand a and b: 0 not at all (constant), 1 first
 * contribution in the reverse sweep (assign), 2 later contribution (accumulate); bit 4: the
 * backward pass needs this instruction's value. imm: two float immediates per instruction.
 * consts: values of registers 1..first_param-1. The trainable constants are registers
 * first_param .. first_param + n_params - 1 = n_fixed; their values are passed per call
 * (params + param_offset) and their gradients returned at the same offsets, so a program
 * description is immutable and can be built once. */
typedef struct {
    const int32_t *code;
    const float *imm;
    const float *consts;
    int32_t n_instr;
    int32_t n_fixed;
    int32_t first_param;
    int32_t n_params;
    int32_t param_offset;
    int32_t reserved;
} afs_prog;

int afs_abi(void) { return AFS_ABI; }
int afs_block(void) { return BLOCK; }
int afs_op_count(void) { return OP_COUNT; }
const char *afs_op_name(int op) { return (op >= 0 && op < OP_COUNT) ? op_names[op] : 0; }

#define LOOP _Pragma("omp simd") for (int k = 0; k < len; k++)

/* contribution to an operand's adjoint: torch sums the gradients of a tensor used several
 * times. Mode 1 (first contribution) clears the block first, mode 2 adds to what is there;
 * one loop body for both keeps the library small and quick to compile. */
#define PUT(mode, dst, expr)                                          \
    do {                                                              \
        if (mode) {                                                   \
            if ((mode) == 1) memset(dst, 0, sizeof(float) * (size_t)len); \
            LOOP { dst[k] += (expr); }                                \
        }                                                             \
    } while (0)

static inline float sgnf(float a) { return (a > 0.f ? 1.f : 0.f) - (a < 0.f ? 1.f : 0.f); }
/* torch.sign: as sgnf, but NaN stays NaN */
static inline float signf_t(float a) { return a != a ? a : sgnf(a); }
/* the protected denominator of div/recip: where(|b| < eps, where(b < 0, -eps, eps), b) */
static inline float protf(float b) { return fabsf(b) < AFS_EPS ? (b < 0.f ? -AFS_EPS : AFS_EPS) : b; }
/* torch.clamp: NaN passes through; either bound may be +-inf (absent) */
static inline float clampf(float a, float lo, float hi) { return a < lo ? lo : (a > hi ? hi : a); }
/* torch.maximum / torch.minimum propagate NaN from either side */
static inline float nanmaxf(float a, float b) { return (a > b || a != a) ? a : b; }
static inline float nanminf(float a, float b) { return (a < b || a != a) ? a : b; }

/* torch's Vectorized<float>::exp (sigmoid, silu, softplus, mish, log_sigmoid, the elu and
 * gelu derivatives; not torch.exp) is SLEEF's expf_u10. The same algorithm, operation for
 * operation (fma included), gives bitwise the same float, and it is cheap and inline. */
static inline float pow2if(int q) {
    union { int32_t i; float f; } u = { .i = (q + 0x7f) << 23 };
    return u.f;
}
static inline float V_EXP(float d) {
    /* keep the integer conversion defined for NaN and huge inputs; they are fixed below */
    float dc = d != d ? 0.f : clampf(d, -104.f, 100.f);
    float qf = rintf(dc * 1.442695040888963407359924681001892137426645954152985934135449406931f);
    int q = (int)qf;
    float s = fmaf(qf, -0.693145751953125f, dc);
    s = fmaf(qf, -1.428606765330187045e-06f, s);
    float u = 0.000198527617612853646278381f;
    u = fmaf(u, s, 0.00139304355252534151077271f);
    u = fmaf(u, s, 0.00833336077630519866943359f);
    u = fmaf(u, s, 0.0416664853692054748535156f);
    u = fmaf(u, s, 0.166666671633720397949219f);
    u = fmaf(u, s, 0.5f);
    u = 1.f + fmaf(s * s, u, s);
    u = u * pow2if(q >> 1) * pow2if(q - (q >> 1));
    u = d < -104.f ? 0.f : u;
    u = d > 100.f ? INFINITY : u;
    return d != d ? d : u;
}

/* torch's mish uses SLEEF's tanhf, which returns exactly +-1 beyond |x| > 8.664339742 where
 * the correctly rounded result is still 1 - 2^-24; mish(x) - x is then 0, as in torch */
static inline float sleef_tanhf(float x) {
    float t = M_TANH(x);
    return fabsf(x) > 8.664339742f ? (x > 0.f ? 1.f : -1.f) : t;
}

#define SQRT1_2F 0.70710678118654752440f
#define TWO_SQRTPI 1.12837916709551257390f       /* torch's erf backward: 2 / sqrt(pi) */
#define GELU_BETA 0.39894228040143267794f        /* M_2_SQRTPI * M_SQRT1_2 * 0.5 */

/* ---------------------------------------------------------------- forward, one instruction */
static void fwd_op(int op, float *restrict o, const float *restrict a, const float *restrict b,
                   float c0, float c1, int len) {
    switch (op) {
    case OP_ID: LOOP { o[k] = a[k]; } break;
    case OP_NEG: LOOP { o[k] = -a[k]; } break;
    case OP_ABS: LOOP { o[k] = fabsf(a[k]); } break;
    case OP_SQUARE: LOOP { o[k] = a[k] * a[k]; } break;
    case OP_CUBE: LOOP { float t = a[k] * a[k]; o[k] = t * a[k]; } break;
    case OP_SQRT: LOOP { o[k] = sqrtf(fabsf(a[k]) + AFS_EPS); } break;
    case OP_LOG: LOOP { o[k] = M_LOG(fabsf(a[k]) + AFS_EPS); } break;
    case OP_EXP: LOOP { o[k] = M_EXP(clampf(a[k], -INFINITY, AFS_EXP_CLAMP)); } break;
    case OP_SIN: LOOP { o[k] = M_SIN(a[k]); } break;
    case OP_COS: LOOP { o[k] = M_COS(a[k]); } break;
    case OP_SINH: LOOP { o[k] = M_SINH(clampf(a[k], -AFS_EXP_CLAMP, AFS_EXP_CLAMP)); } break;
    case OP_COSH: LOOP { o[k] = M_COSH(clampf(a[k], -AFS_EXP_CLAMP, AFS_EXP_CLAMP)); } break;
    case OP_TANH: LOOP { o[k] = M_TANH(a[k]); } break;
    case OP_ASINH: LOOP { o[k] = M_ASINH(a[k]); } break;
    case OP_ATAN: LOOP { o[k] = M_ATAN(a[k]); } break;
    case OP_SINC: LOOP {
        float x = a[k]; int z = x == 0.f; float d = z ? 1.f : x;
        float q = M_SIN(x) / d; o[k] = z ? 1.f : q;
    } break;
    case OP_RELU: LOOP { o[k] = a[k] < 0.f ? 0.f : a[k]; } break;
    case OP_SIGMOID: LOOP { o[k] = 1.f / (1.f + V_EXP(-a[k])); } break;
    case OP_SOFTPLUS: LOOP { float x = a[k]; o[k] = x > 20.f ? x : M_LOG1P(V_EXP(x)); } break;
    case OP_GAUSS: LOOP { o[k] = M_EXP(-(a[k] * a[k])); } break;
    case OP_ERF: LOOP { o[k] = M_ERF(a[k]); } break;
    case OP_ERFC: LOOP { o[k] = M_ERFC(a[k]); } break;
    case OP_RDIV: LOOP { float r = 1.f / protf(a[k]); o[k] = r * c0; } break;
    case OP_EXPM1: LOOP { o[k] = M_EXPM1(clampf(a[k], -INFINITY, AFS_EXP_CLAMP)); } break;
    case OP_LOG_SIGMOID: LOOP {
        /* torch: minimum(x, 0) - log1p(exp(-|x|)) */
        float x = a[k]; o[k] = nanminf(x, 0.f) - M_LOG1P(V_EXP(-fabsf(x)));
    } break;
    case OP_ELU: LOOP {
        /* torch's vectorised elu: blendv(expm1(x) * negcoef, x * poscoef, x > 0) */
        float x = a[k]; o[k] = x > 0.f ? x * c1 : M_EXPM1(x) * c0;
    } break;
    case OP_SILU: LOOP { o[k] = a[k] / (1.f + V_EXP(-a[k])); } break;
    case OP_SOFTSIGN: LOOP { o[k] = a[k] / (fabsf(a[k]) + 1.f); } break;
    case OP_HARD_SIGMOID: LOOP {
        float t = a[k] + 3.f; t = t < 0.f ? 0.f : t; t = t > 6.f ? 6.f : t; o[k] = t / 6.f;
    } break;
    case OP_MISH: LOOP { o[k] = a[k] * sleef_tanhf(M_LOG1P(V_EXP(a[k]))); } break;
    case OP_GELU: LOOP {
        /* torch's float gelu gives NaN at +-inf (its erf); x * (1 + erf) overflows like it */
        float x = a[k]; float e = M_ERF(x * SQRT1_2F); e = (x == INFINITY) ? NAN : e;
        o[k] = (x * (1.f + e)) * 0.5f;
    } break;
    case OP_LEAKY_RELU: LOOP { o[k] = a[k] * (a[k] > 0.f ? 1.f : c0); } break;
    case OP_CLAMP: LOOP { o[k] = clampf(a[k], c0, c1); } break;
    case OP_HARDSWISH: LOOP {
        float x = a[k]; float t = x + 3.f; t = t < 0.f ? 0.f : t; t = t > 6.f ? 6.f : t;
        o[k] = x * t / 6.f;
    } break;
    case OP_ADD: LOOP { o[k] = a[k] + b[k]; } break;
    case OP_SUB: LOOP { o[k] = a[k] - b[k]; } break;
    case OP_MUL: LOOP { o[k] = a[k] * b[k]; } break;
    case OP_DIV: LOOP { o[k] = a[k] / protf(b[k]); } break;
    case OP_MAX: LOOP { o[k] = nanmaxf(a[k], b[k]); } break;
    case OP_MIN: LOOP { o[k] = nanminf(a[k], b[k]); } break;
    case OP_POW: LOOP { o[k] = M_POW(fabsf(a[k]) + AFS_EPS, b[k]); } break;
    case OP_POWC: LOOP { o[k] = M_POW(fabsf(a[k]) + AFS_EPS, c0); } break;
    case OP_SLOG: LOOP { o[k] = signf_t(a[k]) * M_LOG(fabsf(a[k]) + AFS_EPS); } break;
    case OP_SSQRT: LOOP { o[k] = signf_t(a[k]) * sqrtf(fabsf(a[k]) + AFS_EPS); } break;
    default: break;
    }
}

/* ------------------------------------------------------- reverse sweep, one instruction
 * G: adjoint of the output y; a, b: operand values; Aa, Ab: operand adjoints. Each formula
 * follows torch's derivative for the ops of the primitive's template, innermost last. */
static void bwd_op(int op, int ma, int mb, const float *restrict G, const float *restrict a,
                   const float *restrict b, const float *restrict y, float *Aa, float *Ab,
                   float c0, float c1, int len) {
    switch (op) {
    case OP_ID: PUT(ma, Aa, G[k]); break;
    case OP_NEG: PUT(ma, Aa, -G[k]); break;
    case OP_ABS: PUT(ma, Aa, G[k] * sgnf(a[k])); break;                 /* grad * sgn(x) */
    case OP_SQUARE: PUT(ma, Aa, G[k] * a[k] + G[k] * a[k]); break;       /* x * x */
    case OP_CUBE:                                                        /* (x * x) * x */
        PUT(ma, Aa, G[k] * (a[k] * a[k]) + ((G[k] * a[k]) * a[k] + (G[k] * a[k]) * a[k]));
        break;
    case OP_SQRT: PUT(ma, Aa, (G[k] / (2.f * y[k])) * sgnf(a[k])); break;
    case OP_LOG: PUT(ma, Aa, (G[k] / (fabsf(a[k]) + AFS_EPS)) * sgnf(a[k])); break;
    case OP_EXP: PUT(ma, Aa, a[k] <= AFS_EXP_CLAMP ? G[k] * y[k] : 0.f); break;   /* clamp: where */
    case OP_SIN: PUT(ma, Aa, G[k] * M_COS(a[k])); break;
    case OP_COS: PUT(ma, Aa, G[k] * -M_SIN(a[k])); break;
    case OP_SINH:
        PUT(ma, Aa, (a[k] >= -AFS_EXP_CLAMP && a[k] <= AFS_EXP_CLAMP) ? G[k] * M_COSH(clampf(a[k], -AFS_EXP_CLAMP, AFS_EXP_CLAMP)) : 0.f);
        break;
    case OP_COSH:
        PUT(ma, Aa, (a[k] >= -AFS_EXP_CLAMP && a[k] <= AFS_EXP_CLAMP) ? G[k] * M_SINH(clampf(a[k], -AFS_EXP_CLAMP, AFS_EXP_CLAMP)) : 0.f);
        break;
    case OP_TANH: PUT(ma, Aa, G[k] * fmaf(-y[k], y[k], 1.f)); break;
    case OP_ASINH: PUT(ma, Aa, G[k] * (1.f / sqrtf(a[k] * a[k] + 1.f))); break;
    case OP_ATAN: PUT(ma, Aa, G[k] / (a[k] * a[k] + 1.f)); break;
    case OP_SINC:
        /* where(x == 0, 1, sin(x) / where(x == 0, 1, x)): the quotient's gradient reaches x
         * through sin (grad / d * cos x) and through the inner where (-grad * (s / d) / d).
         * s / d is y wherever that term counts; using y keeps sinf and cosf of the same
         * argument out of one loop, which gcc would merge into a sincos call that does not
         * vectorise */
        PUT(ma, Aa, ({
            float x = a[k]; int z = x == 0.f; float d = z ? 1.f : x;
            float gq = z ? 0.f : G[k];
            (gq / d) * M_COS(x) + (z ? 0.f : -gq * (y[k] / d));
        }));
        break;
    case OP_RELU: PUT(ma, Aa, y[k] <= 0.f ? 0.f : G[k]); break;          /* threshold_backward */
    case OP_SIGMOID: PUT(ma, Aa, G[k] * (1.f - y[k]) * y[k]); break;
    case OP_SOFTPLUS:
        PUT(ma, Aa, ({ float z = V_EXP(a[k]); a[k] > 20.f ? G[k] : G[k] * z / (z + 1.f); }));
        break;
    case OP_GAUSS: PUT(ma, Aa, ({ float gu = -(G[k] * y[k]); gu * a[k] + gu * a[k]; })); break;
    case OP_ERF: PUT(ma, Aa, TWO_SQRTPI * M_EXP(-(a[k] * a[k])) * G[k]); break;
    case OP_ERFC: PUT(ma, Aa, -TWO_SQRTPI * M_EXP(-(a[k] * a[k])) * G[k]); break;
    case OP_RDIV:
        /* c / where(..) is reciprocal(d) * c in torch: d(1/d) = -grad * (r * r) */
        PUT(ma, Aa, ({
            float r = 1.f / protf(a[k]); float gd = -(G[k] * c0) * (r * r);
            fabsf(a[k]) < AFS_EPS ? 0.f : gd;
        }));
        break;
    case OP_EXPM1: PUT(ma, Aa, a[k] <= AFS_EXP_CLAMP ? G[k] * (y[k] + 1.f) : 0.f); break;
    case OP_LOG_SIGMOID:
        PUT(ma, Aa, ({
            float x = a[k]; int neg = x < 0.f; float e = V_EXP(-fabsf(x));
            ((neg ? 1.f : 0.f) - (neg ? 1.f : -1.f) * (e / (1.f + e))) * G[k];
        }));
        break;
    case OP_ELU: PUT(ma, Aa, a[k] > 0.f ? G[k] * c1 : G[k] * c0 * V_EXP(a[k])); break;
    case OP_SILU:
        PUT(ma, Aa, ({
            float s = 1.f / (1.f + V_EXP(-a[k])); G[k] * s * fmaf(a[k], 1.f - s, 1.f);
        }));
        break;
    case OP_SOFTSIGN:
        /* x / (|x| + 1): div's two gradients, the denominator's through abs */
        PUT(ma, Aa, ({
            float v = fabsf(a[k]) + 1.f;
            G[k] / v + (-G[k] * ((a[k] / v) / v)) * sgnf(a[k]);
        }));
        break;
    case OP_HARD_SIGMOID:
        PUT(ma, Aa, (a[k] > -3.f && a[k] < 3.f) ? G[k] * (1.f / 6.f) : 0.f);
        break;
    case OP_MISH:
        PUT(ma, Aa, ({
            float x = a[k]; float s = 1.f / (1.f + V_EXP(-x)); float t = sleef_tanhf(M_LOG1P(V_EXP(x)));
            G[k] * fmaf(x * s, fmaf(-t, t, 1.f), t);
        }));
        break;
    case OP_GELU:
        PUT(ma, Aa, ({
            float x = a[k]; float cdf = 0.5f * (1.f + M_ERF(x * SQRT1_2F));
            float pdf = GELU_BETA * V_EXP(x * x * -0.5f);
            G[k] * fmaf(x, pdf, cdf);
        }));
        break;
    case OP_LEAKY_RELU: PUT(ma, Aa, G[k] * (a[k] > 0.f ? 1.f : c0)); break;
    case OP_CLAMP: PUT(ma, Aa, (a[k] >= c0 && a[k] <= c1) ? G[k] : 0.f); break;
    case OP_HARDSWISH:
        /* torch's vectorised hardswish_backward: 0 up to -3 inclusive, grad from 3 on (its
         * scalar tail loop passes grad at NaN instead) */
        PUT(ma, Aa, a[k] <= -3.f ? 0.f : (a[k] >= 3.f ? G[k] : G[k] * ((a[k] / 3.f) + 0.5f)));
        break;
    case OP_ADD: PUT(ma, Aa, G[k]); PUT(mb, Ab, G[k]); break;
    case OP_SUB: PUT(ma, Aa, G[k]); PUT(mb, Ab, -G[k]); break;
    case OP_MUL: PUT(ma, Aa, G[k] * b[k]); PUT(mb, Ab, G[k] * a[k]); break;
    case OP_DIV:
        PUT(ma, Aa, G[k] / protf(b[k]));
        PUT(mb, Ab, ({
            float d = protf(b[k]); float gd = -G[k] * ((a[k] / d) / d);
            fabsf(b[k]) < AFS_EPS ? 0.f : gd;
        }));
        break;
    case OP_MAX:
        /* where(a == b, grad / 2, grad).masked_fill_(a < b, 0), and mirrored for b */
        PUT(ma, Aa, a[k] < b[k] ? 0.f : (a[k] == b[k] ? G[k] / 2.f : G[k]));
        PUT(mb, Ab, a[k] > b[k] ? 0.f : (a[k] == b[k] ? G[k] / 2.f : G[k]));
        break;
    case OP_MIN:
        PUT(ma, Aa, a[k] > b[k] ? 0.f : (a[k] == b[k] ? G[k] / 2.f : G[k]));
        PUT(mb, Ab, a[k] < b[k] ? 0.f : (a[k] == b[k] ? G[k] / 2.f : G[k]));
        break;
    case OP_POW:
        /* pow(v, e), v = |x| + eps: base where(e == 0, 0, grad * (e * v^(e-1))) through
         * abs; exponent grad * where(v == 0 & e >= 0, 0, y * log v) */
        PUT(ma, Aa, ({
            float v = fabsf(a[k]) + AFS_EPS; float e = b[k];
            float gv = e == 0.f ? 0.f : G[k] * (e * M_POW(v, e - 1.f));
            gv * sgnf(a[k]);
        }));
        PUT(mb, Ab, ({
            float v = fabsf(a[k]) + AFS_EPS;
            G[k] * ((v == 0.f && b[k] >= 0.f) ? 0.f : y[k] * M_LOG(v));
        }));
        break;
    case OP_POWC:
        /* scalar exponent c0, c1 = (float)(c - 1) computed in double as torch does */
        PUT(ma, Aa, ({
            float v = fabsf(a[k]) + AFS_EPS;
            float gv = c0 == 0.f ? 0.f : G[k] * (c0 * M_POW(v, c1));
            gv * sgnf(a[k]);
        }));
        break;
    /* sign(x) * f(|x| + eps): mul gives grad * sign(x) to f, f' divides, abs multiplies by
     * sgn(x) again (torch.sign itself has no gradient) */
    case OP_SLOG: PUT(ma, Aa, ((G[k] * signf_t(a[k])) / (fabsf(a[k]) + AFS_EPS)) * sgnf(a[k])); break;
    case OP_SSQRT:
        PUT(ma, Aa, ((G[k] * signf_t(a[k])) / (2.f * sqrtf(fabsf(a[k]) + AFS_EPS))) * sgnf(a[k]));
        break;
    default: break;
    }
}

/* ---------------------------------------------------------------------- the drivers */

typedef struct {
    float *vals;  /* n_regs * BLOCK */
    float *adjs;  /* n_regs * BLOCK */
    float **V;    /* register value pointers */
    float **A;    /* register adjoint pointers */
    float *sink;  /* adjoint of constants: never read */
} scratch;

static int max_regs(const afs_prog *progs, int K) {
    int m = 1;
    for (int k = 0; k < K; k++) {
        int r = 1 + progs[k].n_fixed + progs[k].n_instr;
        if (r > m) m = r;
    }
    return m;
}

static int scratch_init(scratch *s, int n_regs) {
    size_t bytes = (size_t)n_regs * BLOCK * sizeof(float);
    s->vals = aligned_alloc(64, bytes);
    s->adjs = aligned_alloc(64, bytes + BLOCK * sizeof(float));
    s->V = malloc(sizeof(float *) * (size_t)n_regs);
    s->A = malloc(sizeof(float *) * (size_t)n_regs);
    if (!s->vals || !s->adjs || !s->V || !s->A) return 0;
    s->sink = s->adjs + (size_t)n_regs * BLOCK;
    return 1;
}

static void scratch_free(scratch *s) {
    free(s->vals); free(s->adjs); free(s->V); free(s->A);
}

/* point the register tables at this thread's scratch and broadcast the program's fixed
 * registers (constants, trainable constants): done once per program switch, not per block */
static void scratch_load(scratch *s, const afs_prog *p, const float *params) {
    int n_regs = 1 + p->n_fixed + p->n_instr;
    for (int r = 1; r < n_regs; r++) {
        s->V[r] = s->vals + (size_t)r * BLOCK;
        s->A[r] = s->adjs + (size_t)r * BLOCK;
    }
    for (int r = 1; r <= p->n_fixed; r++) {
        int is_param = r >= p->first_param;
        float c = is_param ? params[p->param_offset + r - p->first_param] : p->consts[r - 1];
        float *v = s->V[r];
        for (int k = 0; k < BLOCK; k++) v[k] = c;
        if (!is_param) s->A[r] = s->sink;
    }
}

/* only_marked: the backward pass recomputes just the values its sweep reads (flag bit 4,
 * set by fused.py), e.g. not the output of silu, whose derivative needs only the input */
static void run_forward(scratch *s, const afs_prog *p, int len, int only_marked) {
    int base = p->n_fixed + 1;
    for (int i = 0; i < p->n_instr; i++) {
        const int32_t *c = p->code + 4 * i;
        if (only_marked && !(c[3] & 16)) continue;
        fwd_op(c[0], s->V[base + i], s->V[c[1]], s->V[c[2]], p->imm[2 * i], p->imm[2 * i + 1], len);
    }
}

static void run_backward(scratch *s, const afs_prog *p, int len) {
    int base = p->n_fixed + 1;
    for (int i = p->n_instr - 1; i >= 0; i--) {
        const int32_t *c = p->code + 4 * i;
        int ma = c[3] & 3, mb = (c[3] >> 2) & 3;
        if (!ma && !mb) continue;
        int out = base + i;
        bwd_op(c[0], ma, mb, s->A[out], s->V[c[1]], s->V[c[2]], s->V[out], s->A[c[1]], s->A[c[2]],
               p->imm[2 * i], p->imm[2 * i + 1], len);
    }
}

static int choose_threads(int nthreads, int64_t total) {
    if (nthreads < 1 || total < MIN_PARALLEL) return 1;
    return nthreads;
}

/* Block blk of an O x K x M stacked input (member k's elements are x[o, k, :] for every o; bps
 * blocks per row of M, O * bps blocks per member, numbered member by member): its member's
 * program, offset and length. Loads the program into the scratch registers when the member
 * changes (*cur). */
static inline const afs_prog *enter_block(scratch *s, const afs_prog *progs, const float *params,
                                          int64_t blk, int64_t bps, int64_t O, int32_t K, int64_t M,
                                          int *cur, int64_t *off, int *len) {
    int k = (int)(blk / (O * bps));
    int64_t r = blk % (O * bps), o = r / bps;
    int64_t j0 = (r % bps) * BLOCK;
    *off = (o * K + k) * M + j0;
    *len = (int)((M - j0) < BLOCK ? (M - j0) : BLOCK);
    const afs_prog *p = progs + k;
    if (k != *cur) { scratch_load(s, p, params); *cur = k; }
    return p;
}

/* y[o, k, j] = program_k(x[o, k, j]) for o < O, k < K, j < M (O = 1: K contiguous slices).
 * Returns 0 on success. */
int afs_forward(const afs_prog *progs, int64_t O, int32_t K, int64_t M, const float *x, const float *params,
                float *y, int32_t nthreads) {
    if (O <= 0 || K <= 0 || M <= 0) return 0;
    const int64_t bps = (M + BLOCK - 1) / BLOCK, nblocks = bps * O * K;
    const int n_regs = max_regs(progs, K);
    int failed = 0;
    #pragma omp parallel num_threads(choose_threads(nthreads, O * M * K))
    {
        scratch s;
        int ok = scratch_init(&s, n_regs);
        if (!ok) {
            #pragma omp atomic write
            failed = 1;
        }
        int cur = -1;
        #pragma omp for schedule(static)
        for (int64_t blk = 0; blk < nblocks; blk++) {
            if (!ok) continue;
            int64_t off;
            int len;
            const afs_prog *p = enter_block(&s, progs, params, blk, bps, O, K, M, &cur, &off, &len);
            int root = p->n_fixed + p->n_instr;
            s.V[0] = (float *)(x + off);
            s.V[root] = y + off; /* the last instruction writes the output directly */
            run_forward(&s, p, len, 0);
            s.V[root] = s.vals + (size_t)root * BLOCK;
        }
        if (ok) scratch_free(&s);
    }
    return failed ? -1 : 0;
}

/* gx = dL/dx given g = dL/dy (g_scalar: g points to one value broadcast to every element);
 * pgrad[progs[k].param_offset + i] = dL/d(parameter i of program k), summed in double.
 * gx and pgrad may be NULL when not wanted. Returns 0 on success. */
int afs_backward(const afs_prog *progs, int64_t O, int32_t K, int64_t M, const float *x, const float *params,
                 const float *g, int32_t g_scalar, float *gx, float *pgrad, int32_t nthreads) {
    if (O <= 0 || K <= 0 || M <= 0) return 0;
    const int64_t bps = (M + BLOCK - 1) / BLOCK, nblocks = bps * O * K;
    const int n_regs = max_regs(progs, K);
    int max_params = 0;
    for (int k = 0; k < K; k++) if (progs[k].n_params > max_params) max_params = progs[k].n_params;
    double *partial = NULL;
    if (pgrad && max_params) {
        partial = malloc(sizeof(double) * (size_t)nblocks * (size_t)max_params);
        if (!partial) return -1;
    }
    int failed = 0;
    #pragma omp parallel num_threads(choose_threads(nthreads, O * M * K))
    {
        scratch s;
        int ok = scratch_init(&s, n_regs);
        float *gfill = ok ? aligned_alloc(64, BLOCK * sizeof(float)) : NULL;
        if (!ok || !gfill) {
            ok = 0;
            #pragma omp atomic write
            failed = 1;
        } else if (g_scalar) {
            for (int k = 0; k < BLOCK; k++) gfill[k] = g[0];
        }
        int cur = -1;
        #pragma omp for schedule(static)
        for (int64_t blk = 0; blk < nblocks; blk++) {
            if (!ok) continue;
            int64_t off;
            int len;
            const afs_prog *p = enter_block(&s, progs, params, blk, bps, O, K, M, &cur, &off, &len);
            int root = p->n_fixed + p->n_instr;
            s.V[0] = (float *)(x + off);
            s.A[0] = gx ? gx + off : s.sink;
            run_forward(&s, p, len, 1);
            s.A[root] = g_scalar ? gfill : (float *)(g + off);
            run_backward(&s, p, len);
            s.A[root] = s.adjs + (size_t)root * BLOCK;
            if (partial) {
                for (int i = 0; i < p->n_params; i++) {
                    const float *ap = s.A[p->first_param + i];
                    double acc = 0.0;
                    #pragma omp simd reduction(+:acc)
                    for (int e = 0; e < len; e++) acc += (double)ap[e];
                    partial[blk * max_params + i] = acc;
                }
            }
        }
        if (ok) { scratch_free(&s); free(gfill); }
        else if (gfill) free(gfill);
    }
    if (!failed && partial) {
        /* block order, not thread order: the sum does not depend on the thread count */
        for (int k = 0; k < K; k++) {
            const afs_prog *p = progs + k;
            for (int i = 0; i < p->n_params; i++) {
                double acc = 0.0;
                for (int64_t blk = (int64_t)k * O * bps; blk < (int64_t)(k + 1) * O * bps; blk++)
                    acc += partial[blk * max_params + i];
                pgrad[p->param_offset + i] = (float)acc;
            }
        }
    }
    free(partial);
    return failed ? -1 : 0;
}
