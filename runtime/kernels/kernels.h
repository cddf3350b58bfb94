/*
 * kernels.h: the prebuilt kernels that code compiled in process by libtcc
 * calls for its heavy loops (the JIT backend, issue 13).
 *
 * tcc neither vectorizes nor keeps values in registers across statements, so
 * the C it compiles is only the fixed-size glue (compiler/emit_glue.c): the
 * layer order, the buffers, the loss, the API of the generated C; every
 * convolution (grouped and depthwise too), dense layer, batchnorm, pool and
 * optimizer step calls one of these kernels with its dimensions as constant
 * arguments. They are compiled when cnngen is built, with -O3, once per
 * vector width (kernels.c three times: AVX-512, AVX2 + FMA, plain C), and
 * cnk_select() picks one set by the CPU's features; backend_tcc.c hands the
 * chosen set to tcc (tcc_add_symbol) under the names below. --backend
 * cc-kernels compiles the same glue with the system compiler, the kernels
 * declared as function pointers of these names that backend.c sets after
 * dlopen. The written-out C (-o) and the cc backend never call them: they
 * stay fully specialized and self-contained.
 *
 * One list, CNK_KERNELS, names every kernel with its parameters: it declares
 * the per-width functions here and, as text, the prototypes the glue writes
 * at the top of the generated C, so the two cannot drift apart. A new op adds
 * its kernels to the list (forward; backward data and weight gradients where
 * it has them), their bodies to kernels.c, and a glue function to
 * emit_glue.c that writes the layer's functions as calls.
 *
 * Tensors are per image, [H][W][C] (channels innermost); conv weights
 * [KH][KW][C][F], transposed ones (wt) [KH][KW][F][C], dense weights
 * [IN][OUT]. `act` is an Act (compiler/ops.h). Gradients are added into dw
 * and db; dx is overwritten.
 */
#ifndef CNNGEN_KERNELS_H
#define CNNGEN_KERNELS_H

/* A convolution's dimensions: channels in and out, window, stride, the
   (padded) input and the output, the activation; pool: 0, or 1 for a max and
   2 for an average pool of PKH x PKW (its stride the window) fused after it
   (inference only). */
#define CNK_CONV_FIELDS int C, F, KH, KW, SH, SW, IH, IW, OH, OW, act, pool, PKH, PKW;
typedef struct cnk_conv {
  CNK_CONV_FIELDS
} cnk_conv;

/* X(name, parameters) for every kernel. */
#define CNK_KERNELS(X)                                                                         \
  /* y = pool(act(conv(x) + b)); b may be NULL */                                              \
  X(conv_forward, (const cnk_conv *d, const float *x, const float *w, const float *b, float *y)) \
  /* dy = act'(y) dy in place; db += sum of dy (db may be NULL); dw += dW;                     \
     dx = dX when dx is not NULL (wt: the weights transposed, or NULL) */                     \
  X(conv_backward, (const cnk_conv *d, const float *x, const float *y, float *dy,              \
                    const float *w, const float *wt, float *dw, float *db, float *dx))         \
  /* the same through the maxpool PKH x PKW after it, from dyp at its output yp; y is          \
     the conv's output; dw is added transposed, [F][KH][KW][C] (dwt) */                       \
  X(conv_pool_backward, (const cnk_conv *d, const float *x, const float *y, const float *yp,   \
                         const float *dyp, const float *w, const float *wt, float *dwt,        \
                         float *db, float *dx))                                                \
  /* a grouped conv, groups=g (weights [KH][KW][C/g][F], filter f reading the channels of    \
     its group f / (F/g)): y = act(conv(x) + b), no pool; b may be NULL */                    \
  X(group_conv_forward, (const cnk_conv *d, int g, const float *x, const float *w,             \
                         const float *b, float *y))                                            \
  /* its backward, as conv_backward's without transposed weights */                           \
  X(group_conv_backward, (const cnk_conv *d, int g, const float *x, const float *y, float *dy, \
                          const float *w, float *dw, float *db, float *dx))                    \
  /* batchnorm on p pixels of c channels ([p][c]): one image's sums per channel, in double,  \
     pixel by pixel (the batch's mean), and of the squared deviations from mean */            \
  X(bn_sums, (long p, int c, const float *x, double *v))                                       \
  X(bn_squares, (long p, int c, const float *x, const double *mean, double *v))               \
  /* y = act(x s + sh) per channel (softmax: per group of `group` floats) */                   \
  X(bn_scale, (long p, int c, int act, long group, const float *x, const float *s,             \
               const float *sh, float *y))                                                     \
  /* xh = (x - mean) istd: db += dy, dw += dy xh, v[0..c) += dy, v[c..2c) += dy xh */           \
  X(bn_grad_sums, (long p, int c, const float *x, const float *dy, const float *mean,          \
                   const float *istd, float *dw, float *db, double *v))                        \
  /* dx = w istd (dy - s_dy / cnt - xh s_dyxh / cnt), s the batch's sums of bn_grad_sums */   \
  X(bn_dx, (long p, int c, const float *x, const float *dy, const float *w, const float *mean, \
            const float *istd, const double *s, double cnt, float *dx))                        \
  /* y = act(x W + b) */                                                                       \
  X(dense_forward, (int in, int out, int act, const float *x, const float *w, const float *b,  \
                    float *y))                                                                 \
  /* dy = act'(y) dy in place; db += dy; dw += x dy^T; dx = W dy when dx is not NULL */        \
  X(dense_backward, (int in, int out, int act, const float *x, const float *y, float *dy,      \
                     const float *w, float *dw, float *db, float *dx))                         \
  /* max (avg 0) or average (avg 1) pool, stride sh x sw, input [IH][IW][C] */                 \
  X(pool_forward, (int avg, int c, int iw, int oh, int ow, int kh, int kw, int sh, int sw,     \
                   const float *x, float *y))                                                  \
  /* its backward: the maximum's gradient to the first maximum in row-major order */          \
  X(pool_backward, (int avg, int c, int ih, int iw, int oh, int ow, int kh, int kw, int sh,    \
                    int sw, const float *x, const float *y, const float *dy, float *dx))       \
  /* adam on n parameters with the gradient scale * g (docs: SPEC numerics) */               \
  X(adam, (float *p, const float *g, float *m, float *v, long n, float scale, float c1,        \
           float c2, float lr, float b1, float one_b1, float b2, float one_b2, float eps,      \
           float wd))                                                                          \
  /* sgd; v NULL without momentum */                                                           \
  X(sgd, (float *p, const float *g, float *v, long n, float scale, float lr, float momentum,   \
          int nesterov, float wd))                                                             \
  /* dst[o][c][r] = src[o][r][c] (add: +=), o < outer, r < rows, c < cols */                  \
  X(transpose, (const float *src, float *dst, long outer, long rows, long cols, int add))      \
  /* into[i] += g[i] */                                                                        \
  X(add, (float *into, const float *g, long n))                                                \
  /* y = act(a + b) over n floats (softmax: over all n), a residual block's sum; y may be      \
     a or b */                                                                                 \
  X(add_forward, (long n, int act, const float *a, const float *b, float *y))                  \
  /* dy = act'(y) dy in place over n floats (softmax: per group of `group`) */                 \
  X(act_backward, (long n, int act, int group, const float *y, float *dy))

/* The glue's text of the above: the struct and one prototype per kernel. */
#define CNK_STR_(...) #__VA_ARGS__
#define CNK_STR(...) CNK_STR_(__VA_ARGS__)
#define CNK_PROTO_TEXT(name, params) "void cnk_" #name CNK_STR(params) ";\n"
#define CNK_STRUCT_TEXT "typedef struct cnk_conv {\n  " CNK_STR(CNK_CONV_FIELDS) "\n} cnk_conv;\n"
#define CNK_DECLARATIONS CNK_STRUCT_TEXT CNK_KERNELS(CNK_PROTO_TEXT)
/* The same as function pointers, set after dlopen (--backend cc-kernels). */
#define CNK_POINTER_TEXT(name, params) "void (*cnk_" #name ")" CNK_STR(params) ";\n"
#define CNK_POINTER_DECLARATIONS CNK_STRUCT_TEXT CNK_KERNELS(CNK_POINTER_TEXT)

/* One width's kernels, by name. */
typedef struct CnkSymbol {
  const char *name; /* "cnk_conv_forward" */
  void (*fn)(void); /* of the type its prototype says */
} CnkSymbol;

typedef struct CnkSet {
  const char *isa; /* "avx512", "avx2", "generic" */
  const CnkSymbol *symbols;
  int count;
} CnkSet;

/* The widest set this CPU runs; CNNGEN_KERNELS=avx512|avx2|generic picks
   one by name (where the CPU has it; tests run each). */
const CnkSet *cnk_select(void);

#define CNK_DECLARE(name, params) void cnk_##name##_avx512 params, cnk_##name##_avx2 params, \
                                      cnk_##name##_generic params;
CNK_KERNELS(CNK_DECLARE)
#undef CNK_DECLARE
extern const CnkSet cnk_set_avx512, cnk_set_avx2, cnk_set_generic;

#endif
