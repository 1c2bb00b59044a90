# Minimax (Remez exchange) fit with mpmath: minimise max |w(x) * (f(x) - sum c_i x^(e_i))| on [a, b].
# Usage as a library: remez(f, a, b, exps, w) -> (coeffs, max_err)
import mpmath as mp
mp.mp.dps = 50

def remez(f, a, b, exps, w=lambda x: 1, iters=30, grid=4000):
    a = mp.mpf(a); b = mp.mpf(b)
    n = len(exps)
    # initial reference: Chebyshev extrema
    xs = [ (a + b) / 2 - (b - a) / 2 * mp.cos(mp.pi * i / (n)) for i in range(n + 1)]
    best = None
    for it in range(iters):
        A = mp.matrix(n + 1, n + 1); rhs = mp.matrix(n + 1, 1)
        for j, x in enumerate(xs):
            for i, e in enumerate(exps):
                A[j, i] = x ** e
            A[j, n] = (-1) ** j / w(x)
            rhs[j] = f(x)
        sol = mp.lu_solve(A, rhs)
        c = [sol[i] for i in range(n)]
        E = sol[n]
        err = lambda x: w(x) * (f(x) - sum(ci * x ** e for ci, e in zip(c, exps)))
        # dense grid, then local extrema
        pts = [a + (b - a) * (1 - mp.cos(mp.pi * k / grid)) / 2 for k in range(grid + 1)]
        vals = [err(x) for x in pts]
        ext = []
        for k in range(grid + 1):
            v = vals[k]
            l = vals[k - 1] if k > 0 else None
            r = vals[k + 1] if k < grid else None
            if (l is None or abs(v) >= abs(l)) and (r is None or abs(v) >= abs(r)):
                ext.append((pts[k], v))
        # merge to alternating sequence, keeping the largest in each sign run
        alt = []
        for x, v in ext:
            if alt and mp.sign(alt[-1][1]) == mp.sign(v):
                if abs(v) > abs(alt[-1][1]): alt[-1] = (x, v)
            else:
                alt.append((x, v))
        while len(alt) > n + 1:
            # drop the smaller of the two ends
            if abs(alt[0][1]) < abs(alt[-1][1]): alt.pop(0)
            else: alt.pop()
        maxerr = max(abs(v) for _, v in alt)
        best = (c, maxerr)
        if len(alt) < n + 1:
            break
        xs = [x for x, _ in alt]
        minerr = min(abs(v) for _, v in alt)
        if maxerr / minerr - 1 < mp.mpf('1e-6'):
            break
    return best

def show(name, c, err, exps, fmt='f64'):
    print(f"// {name}: max weighted error {mp.nstr(err, 5)} (2^{mp.nstr(mp.log(err, 2), 4)})")
    for ci, e in zip(c, exps):
        if fmt == 'f64':
            print(f"  x^{e}: {repr(float(ci))}")
        else:
            import struct
            v = struct.unpack('f', struct.pack('f', float(ci)))[0]
            print(f"  x^{e}: {v!r} ({float(ci)!r})")
