/*
 * act_poly.h: exp and tanh as branch-free float polynomials, the one copy:
 * runtime/kernels/kernels.c includes it with ACT_POLY(name) defined as
 * k_name; the Makefile turns the text from the first function's comment on
 * into a C string (build/act_poly.inc) that compiler/emit_infer.c writes
 * into the generated C with ACT_POLY(name) spelled NAME_name. Branch-free,
 * so that gcc and clang vectorize the loops that call them (libm's expf and
 * tanhf are calls, one value at a time).
 */
/* exp(x) = 2^n e^r: n the integer nearest x / ln 2, r = x - n ln 2 (in two
   steps), e^r from Cephes' polynomial; x is clamped to [-87, 88] so that 2^n
   stays a normal float. Relative error below 1.5e-7; no branches, no calls.
   (Where float is wider than 32 bits, as in a build with float defined as
   double, the library's exp: the polynomial is a float's.) */
static inline float ACT_POLY(exp)(float x) {
  if (sizeof(float) != sizeof(int32_t))
    return expf(x);
  x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
  const float k = (x * 1.44269504f + 12582912.0f) - 12582912.0f; /* rounded */
  const float r = (x - k * 0.693359375f) + k * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = ((int32_t)k + 127) << 23;
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

/* tanh: Cephes' odd polynomial below 0.625, 1 - 2 / (e^2|x| + 1) above.
   Relative error below 2.5e-7. */
static inline float ACT_POLY(tanh)(float x) {
  if (sizeof(float) != sizeof(int32_t))
    return tanhf(x);
  const float ax = x < 0.0f ? -x : x, z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * x + x;
  const float big = 1.0f - 2.0f / (ACT_POLY(exp)(2.0f * ax) + 1.0f);
  return ax < 0.625f ? small : x < 0.0f ? -big : big;
}
