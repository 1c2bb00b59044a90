# Regenerates the minimax fits used in src/vmath.rs (Remez exchange in mpmath, see remez.py);
# pow's tables and fits: pow_tables.py.
from remez import *
mp.mp.dps = 50
L = mp.log(2) / 2
c, e = remez(lambda r: mp.expm1(r) - r, -L, L, list(range(2, 9)),
             w=lambda r: 1 / abs(mp.expm1(r)) if r != 0 else mp.mpf(1), grid=1500)
show("expm1_poly: expm1(r) = r + sum c r^k, |r| <= ln2/2, relative", c, e, list(range(2, 9)))
T = mp.tan(mp.pi / 8)
g = lambda u: mp.atan(mp.sqrt(u)) / mp.sqrt(u) if u > 0 else mp.mpf(1)
c, e = remez(lambda u: g(u) - 1, 0, T * T, list(range(1, 7)), w=lambda u: 1 / g(u), grid=800)
show("atan_poly_f64: atan(t)/t = 1 + sum c u^k, u = t^2 <= tan^2(pi/8), relative", c, e, list(range(1, 7)))
h = lambda u: mp.erf(mp.sqrt(u)) / mp.sqrt(u) if u > 0 else 2 / mp.sqrt(mp.pi)
c, e = remez(h, 0, 1, list(range(0, 8)), w=lambda u: 1 / h(u), grid=800)
show("erf small: erf(x)/x = sum c u^k, u = x^2 <= 1, relative", c, e, list(range(0, 8)))
f = lambda t: (lambda z: mp.log(mp.erfc(z) / t) + z * z)(2 * (1 / t - 1))
c, e = remez(f, 1 / mp.mpf(6.25), 1, list(range(0, 13)), grid=1000)
show("erfc_pos: log(erfc(z)/t) + z^2 = sum c t^k, t = 1/(1+z/2), z in [0, 10.5], absolute", c, e, list(range(0, 13)))
# tanh in f32 lanes: tanh(a) = a + a^3 P(z), z = a^2 <= (9/16)^2; the weight makes the error
# relative to tanh(a) (a^3 err / tanh a = z a err / tanh a).
T = mp.mpf(9) / 16
g = lambda z: (mp.tanh(mp.sqrt(z)) - mp.sqrt(z)) / mp.sqrt(z) ** 3 if z > 0 else -mp.mpf(1) / 3
c, e = remez(g, 0, T * T, list(range(0, 5)),
             w=lambda z: z * mp.sqrt(z) / mp.tanh(mp.sqrt(z)) if z > 0 else mp.mpf("1e-40"))
show("tanh small: tanh(a) = a + a^3 sum c z^k, z = a^2 <= (9/16)^2, relative", c, e, list(range(0, 5)))
# tan in f32 lanes (vmath::TAN_P): tan(r) = r + r^3 P(z), z = r^2 <= (pi/4 + 1e-3)^2 (the f32
# reduction's n may overshoot pi/4 a little); the weight makes the error relative to tan(r).
T = mp.pi / 4 + mp.mpf('0.001')
g = lambda z: (mp.tan(mp.sqrt(z)) - mp.sqrt(z)) / mp.sqrt(z) ** 3 if z > 0 else mp.mpf(1) / 3
c, e = remez(g, 0, T * T, list(range(0, 7)),
             w=lambda z: z * mp.sqrt(z) / mp.tan(mp.sqrt(z)) if z > 0 else mp.mpf("1e-40"), grid=1500)
show("tan: tan(r) = r + r^3 sum c z^k, z = r^2 <= (pi/4 + 1e-3)^2, relative", c, e, list(range(0, 7)), fmt='f32')
# asin/acos in f32 lanes (vmath::ASIN_P): asin(s) = s + s^3 P(z), z = s^2 <= 1/4 (musl's
# reduction: |x| >= 1/2 goes through z = (1 - |x|) / 2); the weight makes the error relative
# to asin(s).
g = lambda z: (mp.asin(mp.sqrt(z)) - mp.sqrt(z)) / mp.sqrt(z) ** 3 if z > 0 else mp.mpf(1) / 6
c, e = remez(g, 0, mp.mpf(1) / 4, list(range(0, 6)),
             w=lambda z: z * mp.sqrt(z) / mp.asin(mp.sqrt(z)) if z > 0 else mp.mpf("1e-40"), grid=1500)
show("asin: asin(s) = s + s^3 sum c z^k, z = s^2 <= 1/4, relative", c, e, list(range(0, 6)), fmt='f32')
