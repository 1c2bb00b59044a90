# Tables and fits of vmath::pow (float32 x^y in f64 lanes, 16-entry tables; the shape of
# ARM optimized-routines' powf). Run: python3 pow_tables.py (needs mpmath); paste the output.
#
# log2 side: z = x's f64 mantissa scaled into [OFF, 2 OFF), OFF = 0.69921875; the top 4
# bits of (bits(z) - bits(OFF)) pick subinterval i, invc[i] ~ 1/centre (1.0 exactly for the
# one holding 1, so log2 of a power of two is exact), logc[i] = -log2(invc[i]) rounded once;
# log2(z) = logc + log2(1 + r), r = z invc - 1 (one fused rounding).
# exp2 side: 2^t = 2^(K/16) 2^r, K = round(16 t), |r| <= 1/32, table 2^(j/16).
import struct
from remez import *
mp.mp.dps = 50

def bits(d): return struct.unpack('<Q', struct.pack('<d', d))[0]
def dbl(b): return struct.unpack('<d', struct.pack('<Q', b))[0]

OFF = bits(0.69921875)
invc, logc, rmax = [], [], mp.mpf(0)
for i in range(16):
    lo = dbl(OFF + (i << 48)); hi = dbl(OFF + ((i + 1) << 48))
    c = 1.0 if lo <= 1.0 < hi else float(1 / ((mp.mpf(lo) + mp.mpf(hi)) / 2))
    invc.append(c)
    logc.append(float(-mp.log(mp.mpf(c), 2)))
    for z in (lo, hi):
        rmax = max(rmax, abs(mp.mpf(z) * mp.mpf(c) - 1))
print(f"// |r| <= {mp.nstr(rmax, 6)}")
print("const POW_INVC: [u64; 16] = [" + ", ".join(f"0x{bits(v):016X}" for v in invc) + "];")
print("const POW_LOGC: [u64; 16] = [" + ", ".join(f"0x{bits(v):016X}" for v in logc) + "];")
print("const POW_EXP2: [u64; 16] = [" + ", ".join(f"0x{bits(float(mp.mpf(2) ** (mp.mpf(j) / 16))):016X}" for j in range(16)) + "];")
R = rmax * mp.mpf("1.001")
g = lambda r: mp.log1p(r) / (r * mp.log(2)) if r != 0 else 1 / mp.log(2)
c, e = remez(g, -R, R, list(range(0, 6)), w=lambda r: 1 / g(r), grid=1500)
show("log2(1+r) = r sum c r^k, relative", c, e, list(range(0, 6)))
c, e = remez(lambda r: mp.mpf(2) ** r - 1, -mp.mpf(1) / 32, mp.mpf(1) / 32, list(range(1, 5)),
             w=lambda r: 2 ** -r, grid=1000)
show("2^r = 1 + sum c r^k, |r| <= 1/32, relative", c, e, list(range(1, 5)))
