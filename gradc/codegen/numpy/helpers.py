"""The vectorised helpers the numpy target's kernels call (``_sigmoid``, ``_erf``), copied
verbatim into its modules where used. Its runtime hooks are the CPU target's
(:mod:`gradc.codegen.host`: arrays are NumPy arrays, params are updated in place,
train_epoch is a loop over the minibatches calling the train_step kernel). Same rules as
every pasted runtime module: numpy, math and the module's own names only.
"""

import numpy as np


def _sigmoid(x):
    """1 / (1 + exp(-x)) over an array, without overflow and accurate in both tails (the
    CPU target's fsigmoid): with e = exp(-|x|), 1/(1+e) for x >= 0, e - e^2/(1+e) else."""
    e = np.exp(-np.abs(x))
    d = np.where(x >= 0, 1, e * e) / (1 + e)
    return np.where(x >= 0, d, e - d)


def _erf(x):
    """erf over an array (NumPy has none): the rational approximations of fdlibm's
    s_erf.c, branch-free as the CPU target's ferf, in float64 (1 ulp); float32 arguments
    are rounded back. Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
    Developed at SunPro, a Sun Microsystems, Inc. business. Permission to use, copy,
    modify, and distribute this software is freely granted, provided that this notice is
    preserved."""
    dtype = np.result_type(x)
    x = np.asarray(x, np.float64)
    a = np.minimum(np.abs(x), 6.0)
    r1, r2, r3 = a < 0.84375, a < 1.25, a < 2.857142857142857
    w = 1.0 / np.maximum(a, 0.84375)  # read for |x| >= 1.25 only; no 1/0 at x = 0
    t = np.where(r1, a * a, a - 1.0)
    pa = ((0.0, -2.16637559486879084300e-03), (0.0, 3.54783043256182359371e-02),
          (-2.37630166566501626084e-05, -1.10894694282396677476e-01),
          (-5.77027029648944159157e-03, 3.18346619901161753674e-01),
          (-2.84817495755985104766e-02, -3.72207876035701323847e-01),
          (-3.25042107247001499370e-01, 4.14856118683748331666e-01),
          (1.28379167095512558561e-01, -2.36211856075265944077e-03))
    qa = ((0.0, 1.19844998467991074170e-02),
          (-3.96022827877536812320e-06, 1.36370839120290507362e-02),
          (1.32494738004321644526e-04, 1.26171219808761642112e-01),
          (5.08130628187576562776e-03, 7.18286544141962662868e-02),
          (6.50222499887672944485e-02, 5.40397917702171048937e-01),
          (3.97917223959155352819e-01, 1.06420880400844228286e-01), (1.0, 1.0))
    rb = ((-9.81432934416914548592e+00, 0.0),
          (-8.12874355063065934246e+01, -4.83519191608651397019e+02),
          (-1.84605092906711035994e+02, -1.02509513161107724954e+03),
          (-1.62396669462573470355e+02, -6.37566443368389627722e+02),
          (-6.23753324503260060396e+01, -1.60636384855821916062e+02),
          (-1.05586262253232909814e+01, -1.77579549177547519889e+01),
          (-6.93858572707181764372e-01, -7.99283237680523006574e-01),
          (-9.86494403484714822705e-03, -9.86494292470009928597e-03))
    sb = ((-6.04244152148580987438e-02, 0.0),
          (6.57024977031928170135e+00, -2.24409524465858183362e+01),
          (1.08635005541779435134e+02, 4.74528541206955367215e+02),
          (4.29008140027567833386e+02, 2.55305040643316442583e+03),
          (6.45387271733267880336e+02, 3.19985821950859553908e+03),
          (4.34565877475229228821e+02, 1.53672958608443695994e+03),
          (1.37657754143519042600e+02, 3.25792512996573918826e+02),
          (1.96512716674392571292e+01, 3.03380607434824582924e+01), (1.0, 1.0))
    s = w * w

    def horner(coefs, var, cond):
        acc = np.where(cond, *coefs[0])
        for c_true, c_false in coefs[1:]:
            acc = acc * var + np.where(cond, c_true, c_false)
        return acc

    q = np.where(r2, horner(pa, t, r1), horner(rb, s, r3)) / \
        np.where(r2, horner(qa, t, r1), horner(sb, s, r3))
    big = 1.0 - np.exp(q - a * a - 0.5625) * w
    y = np.where(r1, a + a * q, np.where(r2, 8.45062911510467529297e-01 + q, big))
    return np.copysign(y, x).astype(dtype, copy=False)
