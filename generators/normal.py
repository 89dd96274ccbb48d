"""The standard normal CDF (``ndtr``) and its inverse (``ndtri``) in numpy alone.

The generators need nothing else from scipy, and the permissive ``empirical`` model must
run on the base install (numpy, pandas, ...), so both are written here, vectorized:

* ``ndtr`` follows Cephes' ``ndtr``/``erf``/``erfc`` (S. L. Moshier, Cephes Math Library
  2.2, as distributed by SciPy under the BSD licence): rational approximations for
  ``erf`` on ``|x| < 1`` and for ``erfc`` on ``[1, 8)`` and ``[8, ∞)``; relative error
  about 1e-14, the same values as ``scipy.special.ndtr`` to within a few ulps.
* ``ndtri`` takes P. J. Acklam's rational approximation (relative error 1.2e-9) and
  refines it with one Halley step on ``ndtr``; the upper tail is mirrored
  (``ndtri(p) = -ndtri(1 - p)``, ``1 - p`` exact there) so that both tails keep their
  relative precision. ``ndtri(0) = -inf``, ``ndtri(1) = inf``, NaN outside ``[0, 1]``.
"""

from __future__ import annotations

import numpy as np

_SQRT1_2 = 0.70710678118654752440
_SQRT_2PI = 2.50662827463100050242
_MAXLOG = 7.09782712893383996732e2

# Cephes erfc on [1, 8): P(x) / Q(x); on [8, inf): R(x) / S(x); erf on [0, 1): x T(x²) / U(x²)
# (Q, S and U have an implicit leading 1)
_P = (2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0,
      4.86371970985681366614e1, 1.96520832956077098242e2, 5.26445194995477358631e2,
      9.34528527171957607540e2, 1.02755188689515710272e3, 5.57535335369399327526e2)
_Q = (1.0, 1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2,
      9.75708501743205489753e2, 1.82390916687909736289e3, 2.24633760818710981792e3,
      1.65666309194161350182e3, 5.57535340817727675546e2)
_R = (5.64189583547755073984e-1, 1.27536670759978104416e0, 5.01905042251180477414e0,
      6.16021097993053585195e0, 7.40974269950448939160e0, 2.97886665372100240670e0)
_S = (1.0, 2.26052863220117276590e0, 9.39603524938001434673e0, 1.20489539808096656605e1,
      1.70814450747565897222e1, 9.60896809063285878198e0, 3.36907645100081516050e0)
_T = (9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3,
      7.00332514112805075473e3, 5.55923013010394962768e4)
_U = (1.0, 3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3,
      2.26290000613890934246e4, 4.92673942608635921086e4)

# Acklam's inverse normal: central region |p - 0.5| <= 0.5 - _P_LOW, and the lower tail
_A = (-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
      1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00)
_B = (-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
      6.680131188771972e+01, -1.328068155288572e+01, 1.0)
_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
      -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
      3.754408661907416e+00, 1.0)
_P_LOW = 0.02425


def _poly(x: np.ndarray, coef: tuple) -> np.ndarray:
    """Horner: coef[0] x^n + ... + coef[n]."""
    y = x * coef[0]
    y += coef[1]
    for c in coef[2:]:
        y *= x
        y += c
    return y


def _erfc_pos(x: np.ndarray) -> np.ndarray:
    """erfc(x) for x >= 1 (Cephes' two rational approximations; 0 once exp(-x²) is)."""
    out = np.zeros_like(x)
    mid = x < 8.0
    far = ~mid & (x * x <= _MAXLOG)
    xm, xf = x[mid], x[far]
    out[mid] = np.exp(-xm * xm) * _poly(xm, _P) / _poly(xm, _Q)
    out[far] = np.exp(-xf * xf) * _poly(xf, _R) / _poly(xf, _S)
    return out


def ndtr(x) -> np.ndarray:
    """P(Z <= x) for a standard normal Z, elementwise."""
    t = np.asarray(x, dtype=float) * _SQRT1_2
    z = np.abs(t)
    out = np.full_like(t, np.nan)
    small = z < 1.0
    ts = t[small]
    s = ts * ts
    out[small] = 0.5 + 0.5 * ts * _poly(s, _T) / _poly(s, _U)
    big = z >= 1.0  # NaN is neither small nor big
    half_erfc = 0.5 * _erfc_pos(z[big])
    out[big] = np.where(t[big] > 0, 1.0 - half_erfc, half_erfc)
    return out if out.ndim else out[()]


def ndtri(p) -> np.ndarray:
    """The x with ndtr(x) = p, elementwise (the standard normal quantile function)."""
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    out[p == 0.0] = -np.inf
    out[p == 1.0] = np.inf
    inside = (p > 0.0) & (p < 1.0)
    pi = p[inside]
    upper = pi > 1.0 - _P_LOW  # the upper tail, mirrored: ndtri(p) = -ndtri(1 - p)
    q = np.where(upper, 1.0 - pi, pi)  # exact for p >= 0.5
    x = np.empty_like(q)
    tail = q < _P_LOW
    r = np.sqrt(-2.0 * np.log(q[tail]))
    x[tail] = _poly(r, _C) / _poly(r, _D)
    c = q[~tail] - 0.5  # exact
    x[~tail] = c * _poly(c * c, _A) / _poly(c * c, _B)
    u = (ndtr(x) - q) * _SQRT_2PI * np.exp(0.5 * x * x)  # one Halley step
    x -= u / (1.0 + 0.5 * x * u)
    out[inside] = np.where(upper, -x, x)
    return out if out.ndim else out[()]


def ks_statistic(a, b) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest distance between the
    empirical CDFs of ``a`` and ``b`` (what ``scipy.stats.ks_2samp(a, b).statistic``
    gives)."""
    a = np.sort(np.asarray(a, dtype=float))
    b = np.sort(np.asarray(b, dtype=float))
    if not a.size or not b.size:
        return float("nan")
    both = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, both, side="right") / a.size
    cdf_b = np.searchsorted(b, both, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))
