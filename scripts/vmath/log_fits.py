# Fits of vmath::log, vmath::log2 and vmath::log10 (float32, f32 lanes with fused multiply-adds).
# Run: python3 log_fits.py (needs mpmath); paste the output.
#
# x = 2^k (1 + f), f in [sqrt(1/2) - 1, sqrt(2) - 1); log_b(1 + f) = f C + f^2 Q(f), where
# C = log_b(e) is split into an f32 head and tail (f C_hi is then exact inside a fused
# multiply-add) and Q is fitted here with the error weighted relative to log_b(1 + f).
import struct
from remez import *
mp.mp.dps = 50

def f32(v): return struct.unpack('f', struct.pack('f', float(v)))[0]

A = mp.sqrt(mp.mpf(1) / 2) - 1
B = mp.sqrt(mp.mpf(2)) - 1
DEG = 9
for name, base in (("log", mp.e), ("log2", mp.mpf(2)), ("log10", mp.mpf(10))):
    C = 1 / mp.log(base)
    hi = f32(C)
    lo = f32(C - hi)
    print(f"// {name}: C_hi = {hi!r}, C_lo = {lo!r}")
    g = lambda f: (mp.log1p(f) * C - f * C) / (f * f) if f != 0 else -C / 2
    wt = lambda f: (f * f) / abs(mp.log1p(f) * C) if f != 0 else mp.mpf(0) + abs(f) / C
    c, e = remez(g, A * mp.mpf("1.0001"), B * mp.mpf("1.0001"), list(range(DEG + 1)),
                 w=lambda f: (abs(f) / C) if f == 0 else wt(f), grid=2000)
    show(f"{name}: (log_b(1+f) - f C) / f^2, error relative to log_b(1+f)", c, e,
         list(range(DEG + 1)), fmt='f32')
