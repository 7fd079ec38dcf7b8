"""fp8flow.compare and fp8flow.testing.assert_bitexact: planted faults found, located and explained."""
import ml_dtypes as md
import numpy as np
import pytest

import fp8flow
from fp8flow.testing import assert_bitexact
from user_kernels import fork_sat, te_pow2_1x128

RNG = np.random.default_rng(11)


def data(r=64, c=256):
    return (RNG.standard_normal((r, c)) * np.exp2(RNG.uniform(-8, 8, (r, 1)))).astype(np.float32)


def test_identical_is_bitexact():
    x = data()
    q = fp8flow.quantize(x)
    rep = fp8flow.compare(q, q)
    assert rep.bitexact and bool(rep) and rep.elements == x.size and rep.scales == 64 * 2
    assert "BIT-EXACT" in str(rep)
    assert_bitexact(q, q)
    assert_bitexact(te_pow2_1x128(x), q)  # a (codes, scale_inv) pair against a Quantized


@pytest.mark.parametrize("where", [(0, 0), (63, 255), (31, 128), (12, 77)])
def test_planted_code_fault_located(where):
    x = data()
    want = fp8flow.quantize(x)
    codes = want.codes.copy()
    codes[where] ^= 0x01
    rep = fp8flow.compare((codes, want.scale_inv), want, input=x)
    assert not rep.bitexact and rep.elements_mismatched == 1 and rep.scales_mismatched == 0
    m = rep.mismatches[0]
    assert (m.row, m.col, m.row_tile, m.col_tile, m.group) == (where[0], where[1], where[0], where[1] // 128, 0)
    assert m.got_code == codes[where] and m.want_code == want.codes[where] and abs(m.ulp) == 1
    assert m.input == float(x[where])
    assert m.cause in ("rounding_ulp", "underflow")
    assert rep.element_mismatch_fraction == pytest.approx(1 / x.size)


def test_assert_bitexact_message_is_the_report():
    x = data()
    want = fp8flow.quantize(x)
    codes = want.codes.copy()
    codes[5, 200] = 0x7F
    with pytest.raises(AssertionError) as e:
        assert_bitexact((codes, want.scale_inv), want, input=x)
    msg = str(e.value)
    assert "not bit-exact" in msg and "1 of 16384 codes differ" in msg
    assert "nan_inf" in msg and "0x7f" in msg
    row = [line for line in msg.splitlines() if line.strip().startswith("5 ")]
    assert row and "(5,1)" in row[0], msg  # 1x128 tiles: tile row 5, tile column 1


def test_tie_and_scale_causes():
    x = np.ones((1, 128), np.float32)
    x[0, 0] = 448.0
    x[0, 1] = 1.0625  # half-way between 1.0 and 1.125
    want = fp8flow.quantize(x)
    pre = np.asarray(x, np.float64)  # scale 1: the pre-cast value is x
    codes = want.codes.copy()
    codes[0, 1] = 0x39  # ties away
    rep = fp8flow.compare((codes, want.scale_inv), want, input=x, precast=pre)
    assert rep.mismatches[0].cause == "rounding_tie" and rep.causes == {"rounding_tie": 1}
    si = want.scale_inv.copy()
    si[0, 0] = 2.0
    rep = fp8flow.compare((want.codes, si), want)
    assert rep.scales_mismatched == 1 and rep.scale_mismatches[0]["log2_ratio"] == 1.0


def test_layout_findings():
    rows, groups = 512, [150, 106, 256]
    x = data(rows, 256)
    codes, si = te_pow2_1x128(x)
    want = fp8flow.transpose(codes, si, "paper_kernel", groups=groups)
    cols, csis = fork_sat(codes, si, groups)
    # per-group blocks flattened: found as a layout difference
    flat = np.concatenate([c.ravel() for c in cols]).reshape(256, rows)
    rep = fp8flow.compare((flat, np.concatenate(csis)), want)
    assert not rep.bitexact and rep.layout and "per-group blocks" in rep.layout[0]
    assert rep.causes == {"layout": rep.elements_mismatched}
    # the right reading is exact: one array, or the kernel's lists as they come
    assert_bitexact((np.concatenate(cols, axis=1), np.concatenate(csis)), want)
    assert_bitexact((cols, csis), want)
    bad = [c.copy() for c in cols]
    bad[1][99, 5] ^= 0x01  # group 1 (input rows 150..255): input row 155, column 99
    m = fp8flow.compare((bad, csis), want).mismatches
    assert len(m) == 1 and (m[0].row, m[0].col, m[0].group) == (155, 99, 1)
    # m_splits with an empty group, as the kernel was called: groups numbered as given
    with_empty = [150, 0, 106, 256]
    want0 = fp8flow.transpose(codes, si, "paper_kernel", groups=with_empty)
    assert want0.meta["row_groups"] == groups
    m = fp8flow.compare((bad, csis), want0, groups=with_empty).mismatches
    assert len(m) == 1 and (m[0].row, m[0].col, m[0].group) == (155, 99, 2)
    # rowwise data declared as the column copy
    rep = fp8flow.compare((np.ascontiguousarray(want.codes.T).reshape(256, rows), want.scale_inv), want)
    assert rep.layout and "other way round" in rep.layout[0]


def test_values_and_plain_codes():
    a = RNG.standard_normal((6, 9)).astype(np.float32)
    b = a.copy()
    b[2, 3] = np.nextafter(b[2, 3], np.float32(10))
    rep = fp8flow.compare(b, a)
    assert rep.what == "values" and rep.elements_mismatched == 1 and rep.mismatches[0].ulp == 1
    assert rep.mismatches[0].cause == "rounding_ulp"
    assert fp8flow.compare(np.ascontiguousarray(a.T), a).layout
    x = (RNG.standard_normal(300) * 100).astype(np.float32)
    c = fp8flow.convert(x, "e4m3")
    bad = c.copy()
    bad[17] = 0x80 if c[17] == 0 else c[17] ^ 0x80
    rep = fp8flow.compare(bad.view(md.float8_e4m3fn), c, input=x, precast=x)
    assert rep.elements_mismatched == 1 and rep.mismatches[0].col == 17
    with pytest.raises(ValueError, match="float32"):
        fp8flow.compare(a.astype(np.float64), a)
