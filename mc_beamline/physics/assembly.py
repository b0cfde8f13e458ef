"""Time-resolved SAXS of nanocrystal supercrystal self-assembly (seed 004).

After a flocculant is added at t = 0 a colloid of charge-stabilised nanocrystals (NCs)
splits its particles over three phases, whose number fractions x_dilute + x_dense +
x_crystal = 1 evolve in time:

* dilute colloidal fluid: hard-sphere fluid at volume fraction ``phi_dilute`` (S ≈ 1,
  the curve is the form factor);
* dense (metastable) fluid: hard-sphere fluid at ``phi_dense``, a short-range structure
  factor with a broad correlation peak;
* supercrystal (SC): fcc (default), bcc, hcp, sc, bct (with c/a) or simple hexagonal
  (with c/a) Bragg peaks.

Scattering (decoupling approximation, Kotlarchyk & Chen 1983; lattice factor after
Förster et al., J. Phys. Chem. B 109, 1347, 2005)::

    I(q, t) = I0 · P̄(q) · Σ_k x_k(t) · [1 + β(q) (S_k(q) − 1)] + background

P̄(q) is the sphere form factor averaged over a Gaussian radius distribution (relative
standard deviation ``polydispersity``), normalised to P̄(0) = 1; β = |⟨V F⟩|² / ⟨V² F²⟩.
Fluid S_k: Percus–Yevick hard spheres of diameter d = 2 R + gap. Crystal:
S = 1 + G(q) (Z0(q) − 1), with the powder lattice factor

    Z0(q) = 2π² / (n v q²) · Σ_hkl m_hkl |F_hkl|² L(q − q_hkl)

(n particles in a cell of volume v, F the cell structure factor, L a unit-area Gaussian
of FWHM 2π·0.9 / ``domain_nm``, Scherrer) and the Debye–Waller factor G = exp(−q² σ²),
σ = ``dw_sigma_nm`` the rms displacement of an NC from its site. Z0 averages to 1 over q.

Kinetics (t in s, x(t < 0) = pure dilute fluid):

* ``"one-step"`` (gentle flocculant addition): SCs nucleate directly in the colloid and
  grow at the expense of the dilute fluid, x_crystal = x_final (1 − exp(−(t/τ_c)^n))
  (Avrami, ``avrami_n``), x_dense = 0.
* ``"two-step"`` (rapid addition): a fraction ``dense_final`` of the NCs first separates into
  the dense fluid (time constant ``tau_dense_s``), which then converts into SCs
  (``tau_crystal_s``): sequential first-order kinetics dilute → dense → crystal.

Lattice constants follow from the nearest-neighbour distance d = 2 R + gap: fcc a = √2 d,
bcc a = 2 d / √3, sc / hcp / bct / hex a = d (bct and hex: c = c/a · a).

Units: q in nm⁻¹, lengths in nm, times in s, intensities in cm⁻¹.

Example::

    model = AssemblyModel(pathway="two-step", lattice="fcc", radius_nm=2.3)
    q = default_q_nm()
    i = model.curve(120.0, q)           # noise-free I(q) at t = 120 s, cm⁻¹
    truth = model.truth(120.0)          # {"dilute": .., "dense": .., "crystal": ..}
    curve = model.measure(120.0, q, rng=0)   # with counting noise and σ
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mc_beamline.physics.saxs_models import SaxsCurve
from mc_beamline.physics.saxs_models import measure as _measure

LATTICES = ("fcc", "bcc", "hcp", "sc", "bct", "hex")
"""Supercrystal lattices the simulator knows."""
PATHWAYS = ("one-step", "two-step")
PHASES = ("dilute", "dense", "crystal")
IDEAL_HCP_C_OVER_A = math.sqrt(8.0 / 3.0)
SCHERRER_K = 0.9


# ----------------------------------------------------------------------- form factor
def sphere_amplitude(x: np.ndarray) -> np.ndarray:
    """Normalised sphere scattering amplitude F(x) = 3 (sin x − x cos x) / x³, F(0) = 1."""
    x = np.asarray(x, dtype=float)
    small = np.abs(x) < 1e-3
    xs = np.where(small, 1.0, x)
    return np.where(small, 1.0 - x**2 / 10.0, 3.0 * (np.sin(xs) - xs * np.cos(xs)) / xs**3)


def polydisperse_sphere(q_nm: np.ndarray, radius_nm: float, polydispersity: float,
                        n_nodes: int = 31) -> tuple[np.ndarray, np.ndarray]:
    """Form factor P̄(q) and decoupling factor β(q) of spheres with Gaussian radii.

    Parameters
    ----------
    q_nm : momentum transfer, nm⁻¹.
    radius_nm : mean radius, nm.
    polydispersity : relative standard deviation of the (number-weighted) radius; 0 is
        monodisperse. The distribution is cut at ±3 σ and at radius > 0.

    Returns
    -------
    (P̄, β): P̄ = ⟨V² F²⟩ / ⟨V²⟩ (1 at q = 0); β = ⟨V F⟩² / ⟨V² F²⟩ in (0, 1].
    """
    q = np.asarray(q_nm, dtype=float)
    if polydispersity <= 0:
        f = sphere_amplitude(q * radius_nm)
        return f * f, np.ones_like(q)
    x, w = np.polynomial.hermite_e.hermegauss(n_nodes)
    keep = np.abs(x) <= 3.0
    x, w = x[keep], w[keep]
    r = radius_nm * (1.0 + polydispersity * x)
    w = np.where(r > 0, w, 0.0)
    r = np.maximum(r, 1e-6)
    w = w / w.sum()
    v = r**3
    f = sphere_amplitude(q[..., None] * r)
    vf = (w * v * f).sum(axis=-1)
    v2f2 = (w * v * v * f * f).sum(axis=-1)
    p = v2f2 / float((w * v * v).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = np.where(v2f2 > 0, vf * vf / np.where(v2f2 > 0, v2f2, 1.0), 1.0)
    return p, np.clip(beta, 0.0, 1.0)


# ---------------------------------------------------------------- fluid structure
def percus_yevick(q_nm: np.ndarray, diameter_nm: float, phi: float) -> np.ndarray:
    """Percus–Yevick structure factor of hard spheres (Wertheim / Thiele closed form).

    Parameters
    ----------
    q_nm : nm⁻¹. diameter_nm : hard-sphere diameter, nm. phi : volume fraction in [0, 0.6).

    Returns S(q), dimensionless; S(0) = (1 − φ)⁴ / (1 + 2φ)².
    """
    if not 0.0 <= phi < 0.6:
        raise ValueError(f"Hard-sphere volume fraction must lie in [0, 0.6), got {phi}.")
    q = np.asarray(q_nm, dtype=float)
    if phi == 0:
        return np.ones_like(q)
    alpha = (1 + 2 * phi) ** 2 / (1 - phi) ** 4
    beta = -6 * phi * (1 + phi / 2) ** 2 / (1 - phi) ** 4
    gamma = phi * alpha / 2
    a = np.abs(q) * diameter_nm
    small = a < 0.05
    a_ = np.where(small, 1.0, a)
    s, c = np.sin(a_), np.cos(a_)
    g = (alpha * (s - a_ * c) / a_**2
         + beta * (2 * a_ * s + (2 - a_**2) * c - 2) / a_**3
         + gamma * (-(a_**4) * c + 4 * ((3 * a_**2 - 6) * c + (a_**3 - 6 * a_) * s + 6)) / a_**5)
    s_q = 1.0 / (1.0 + 24.0 * phi * g / a_)
    return np.where(small, (1 - phi) ** 4 / (1 + 2 * phi) ** 2, s_q)


# ---------------------------------------------------------------- crystal lattices
@dataclass(frozen=True)
class Shell:
    """Reflections of a powder that share one |q|.

    Attributes
    ----------
    q_nm : momentum transfer, nm⁻¹.
    hkl : one representative Miller index (of the lattice's conventional cell).
    multiplicity : number of (h, k, l) with this |q| and non-zero structure factor.
    weight : Σ |F_hkl|² over the shell (F the structure factor of the cell's n particles).
    """

    q_nm: float
    hkl: tuple[int, int, int]
    multiplicity: int
    weight: float


def lattice_cell(lattice: str, a_nm: float, c_over_a: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Direct cell vectors (rows, nm) and fractional particle positions of a lattice."""
    if lattice in ("fcc", "bcc", "sc"):
        cell = np.eye(3) * a_nm
        basis = {"fcc": [(0, 0, 0), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)],
                 "bcc": [(0, 0, 0), (0.5, 0.5, 0.5)], "sc": [(0, 0, 0)]}[lattice]
    elif lattice == "bct":
        ca = 1.2 if c_over_a is None else c_over_a
        cell = np.diag([a_nm, a_nm, ca * a_nm])
        basis = [(0, 0, 0), (0.5, 0.5, 0.5)]
    elif lattice in ("hcp", "hex"):
        ca = (IDEAL_HCP_C_OVER_A if lattice == "hcp" else 1.0) if c_over_a is None else c_over_a
        cell = np.array([[a_nm, 0, 0], [-a_nm / 2, a_nm * math.sqrt(3) / 2, 0], [0, 0, ca * a_nm]])
        basis = [(0, 0, 0), (1 / 3, 2 / 3, 0.5)] if lattice == "hcp" else [(0, 0, 0)]
    else:
        raise ValueError(f"Unknown lattice {lattice!r}; use one of {', '.join(LATTICES)}.")
    return cell, np.array(basis, dtype=float)


def lattice_reflections(lattice: str, a_nm: float, q_max_nm: float, c_over_a: float | None = None) -> list[Shell]:
    """Powder reflections (shells) of a lattice up to ``q_max_nm`` (nm⁻¹), by increasing q.

    Reflections whose structure factor vanishes (fcc mixed hkl, bcc odd h+k+l, hcp
    l odd with h − k ≡ 0 mod 3) are left out.
    """
    cell, basis = lattice_cell(lattice, a_nm, c_over_a)
    recip = 2 * math.pi * np.linalg.inv(cell).T
    n = [int(math.ceil(q_max_nm * np.linalg.norm(cell[i]) / (2 * math.pi))) + 1 for i in range(3)]
    h, k, l = np.meshgrid(*[np.arange(-m, m + 1) for m in n], indexing="ij")
    hkl = np.stack([h.ravel(), k.ravel(), l.ravel()], axis=1)
    q = np.linalg.norm(hkl @ recip, axis=1)
    keep = (q > 0) & (q <= q_max_nm * (1 + 1e-12))
    hkl, q = hkl[keep], q[keep]
    f = np.exp(2j * math.pi * hkl @ basis.T).sum(axis=1)
    f2 = np.abs(f) ** 2
    nonzero = f2 > 1e-8
    hkl, q, f2 = hkl[nonzero], q[nonzero], f2[nonzero]
    order = np.argsort(q, kind="stable")
    hkl, q, f2 = hkl[order], q[order], f2[order]
    shells: list[Shell] = []
    start = 0
    for i in range(1, q.size + 1):
        if i == q.size or q[i] > q[start] * (1 + 1e-9):
            group = hkl[start:i]
            rep = max((tuple(int(v) for v in row) for row in group), key=lambda t: (t[0] >= 0 and t[1] >= 0 and t[2] >= 0, t))
            shells.append(Shell(float(q[start:i].mean()), rep, int(i - start), float(f2[start:i].sum())))
            start = i
    return shells


def nearest_neighbour_to_a(lattice: str, d_nm: float) -> float:
    """Lattice constant a (nm) of a lattice of touching spheres at centre distance ``d_nm``."""
    return {"fcc": math.sqrt(2.0) * d_nm, "bcc": 2.0 * d_nm / math.sqrt(3.0)}.get(lattice, d_nm)


def lattice_factor(q_nm: np.ndarray, lattice: str, a_nm: float, fwhm_nm: float,
                   c_over_a: float | None = None) -> np.ndarray:
    """Powder lattice factor Z0(q) (dimensionless) with Gaussian peaks of FWHM ``fwhm_nm`` (nm⁻¹)."""
    q = np.asarray(q_nm, dtype=float)
    cell, basis = lattice_cell(lattice, a_nm, c_over_a)
    volume = abs(float(np.linalg.det(cell)))
    sig = fwhm_nm / (2 * math.sqrt(2 * math.log(2)))
    shells = lattice_reflections(lattice, a_nm, float(q.max()) + 6 * sig, c_over_a)
    z = np.zeros_like(q)
    norm = 1.0 / (sig * math.sqrt(2 * math.pi))
    for s in shells:
        z += s.weight * norm * np.exp(-0.5 * ((q - s.q_nm) / sig) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(q > 0, 2 * math.pi**2 / (len(basis) * volume * np.where(q > 0, q, 1.0) ** 2) * z, 0.0)


def crystal_structure_factor(q_nm: np.ndarray, lattice: str, a_nm: float, fwhm_nm: float, dw_sigma_nm: float,
                             c_over_a: float | None = None) -> np.ndarray:
    """S(q) = 1 + exp(−q² σ²) (Z0(q) − 1) of a supercrystal powder (Debye–Waller σ in nm)."""
    q = np.asarray(q_nm, dtype=float)
    g = np.exp(-(q * dw_sigma_nm) ** 2)
    return 1.0 + g * (lattice_factor(q, lattice, a_nm, fwhm_nm, c_over_a) - 1.0)


# ---------------------------------------------------------------- the model
@dataclass(frozen=True)
class PhaseFractions:
    """Number fractions of the NCs in each phase at given times (arrays, sum 1)."""

    t_s: np.ndarray
    dilute: np.ndarray
    dense: np.ndarray
    crystal: np.ndarray

    def as_array(self) -> np.ndarray:
        """Shape (n_times, 3): columns dilute, dense, crystal."""
        return np.stack([self.dilute, self.dense, self.crystal], axis=-1)


@dataclass(frozen=True)
class AssemblyModel:
    """Time-resolved SAXS of supercrystal self-assembly (see the module docstring).

    Attributes
    ----------
    pathway : "one-step" or "two-step".
    lattice : supercrystal lattice, one of :data:`LATTICES`.
    radius_nm : mean NC radius, nm (4.6 nm Au NCs: 2.3).
    gap_nm : surface-to-surface gap of neighbours in the crystal and the hard-sphere
        diameter excess of the fluids, nm (~0.3 nm with Sn2S6 ligands).
    polydispersity : relative standard deviation of the radius.
    c_over_a : c/a of bct, hcp (default ideal 1.633) or hex (default 1).
    phi_dilute, phi_dense : volume fractions of the two fluids.
    domain_nm : SC domain size, nm (Bragg peak FWHM = 2π·0.9/domain).
    dw_sigma_nm : rms displacement of an NC from its lattice site, nm.
    i0_cm1 : I(q → 0) of the dilute colloid (S = 1), cm⁻¹.
    background_cm1 : flat solvent background, cm⁻¹.
    crystal_final : one-step: fraction of NCs in SCs at long times.
    tau_crystal_s : one-step: Avrami time; two-step: dense → crystal time constant, s.
    avrami_n : Avrami exponent of the one-step growth.
    dense_final : two-step: fraction of NCs that leaves the dilute fluid.
    tau_dense_s : two-step: dilute → dense time constant, s.
    """

    pathway: str = "one-step"
    lattice: str = "fcc"
    radius_nm: float = 2.3
    gap_nm: float = 0.3
    polydispersity: float = 0.06
    c_over_a: float | None = None
    phi_dilute: float = 0.03
    phi_dense: float = 0.40
    domain_nm: float = 120.0
    dw_sigma_nm: float = 0.15
    i0_cm1: float = 50.0
    background_cm1: float = 0.02
    crystal_final: float = 0.8
    tau_crystal_s: float = 150.0
    avrami_n: float = 2.0
    dense_final: float = 0.85
    tau_dense_s: float = 20.0
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.pathway not in PATHWAYS:
            raise ValueError(f"pathway must be one of {PATHWAYS}, got {self.pathway!r}.")
        if self.lattice not in LATTICES:
            raise ValueError(f"lattice must be one of {LATTICES}, got {self.lattice!r}.")
        if not (self.radius_nm > 0 and self.gap_nm >= 0 and self.polydispersity >= 0 and self.domain_nm > 0):
            raise ValueError("radius, domain size must be positive; gap and polydispersity non-negative.")
        for name in ("crystal_final", "dense_final"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1].")
        if self.tau_crystal_s <= 0 or self.tau_dense_s <= 0:
            raise ValueError("Time constants must be positive.")

    # ---------------------------------------------------------------- geometry
    @property
    def contact_nm(self) -> float:
        """Centre-to-centre distance of neighbours, 2 R + gap (nm)."""
        return 2 * self.radius_nm + self.gap_nm

    @property
    def a_nm(self) -> float:
        """Lattice constant of the supercrystal, nm."""
        return nearest_neighbour_to_a(self.lattice, self.contact_nm)

    @property
    def peak_fwhm_nm(self) -> float:
        """FWHM of the Bragg peaks, nm⁻¹."""
        return 2 * math.pi * SCHERRER_K / self.domain_nm

    def reflections(self, q_max_nm: float) -> list[Shell]:
        """Supercrystal reflections up to ``q_max_nm`` (nm⁻¹)."""
        return lattice_reflections(self.lattice, self.a_nm, q_max_nm, self.c_over_a)

    # ---------------------------------------------------------------- kinetics
    def fractions(self, t_s: float | np.ndarray) -> PhaseFractions:
        """Number fractions of NCs in the dilute fluid, dense fluid and SCs at ``t_s`` (s)."""
        t = np.atleast_1d(np.asarray(t_s, dtype=float))
        tp = np.maximum(t, 0.0)
        if self.pathway == "one-step":
            cr = self.crystal_final * (1.0 - np.exp(-((tp / self.tau_crystal_s) ** self.avrami_n)))
            dense = np.zeros_like(tp)
        else:
            k1, k2, f = 1.0 / self.tau_dense_s, 1.0 / self.tau_crystal_s, self.dense_final
            if abs(k1 - k2) < 1e-9 * k1:
                dense = f * k1 * tp * np.exp(-k1 * tp)
            else:
                dense = f * k1 / (k2 - k1) * (np.exp(-k1 * tp) - np.exp(-k2 * tp))
            dense = np.maximum(dense, 0.0)
            cr = np.maximum(f * (1.0 - np.exp(-k1 * tp)) - dense, 0.0)
        dil = 1.0 - dense - cr
        return PhaseFractions(t, dil, dense, cr)

    def truth(self, t_s: float) -> dict[str, float]:
        """Phase fractions at one time: ``{"dilute", "dense", "crystal"}`` (sum 1)."""
        fr = self.fractions(float(t_s))
        return {"dilute": float(fr.dilute[0]), "dense": float(fr.dense[0]), "crystal": float(fr.crystal[0])}

    # ---------------------------------------------------------------- scattering
    def components(self, q_nm: np.ndarray) -> np.ndarray:
        """Per-particle intensities of the three phases, shape (3, n_q), cm⁻¹ at unit fraction.

        Rows: dilute fluid, dense fluid, crystal; I(q, t) = Σ_k x_k(t) · row_k + background.
        """
        q = np.asarray(q_nm, dtype=float)
        key = (q.tobytes(), q.shape)
        if key not in self._cache:
            p, beta = polydisperse_sphere(q, self.radius_nm, self.polydispersity)
            d = self.contact_nm
            s = [percus_yevick(q, d, self.phi_dilute), percus_yevick(q, d, self.phi_dense),
                 crystal_structure_factor(q, self.lattice, self.a_nm, self.peak_fwhm_nm, self.dw_sigma_nm,
                                          self.c_over_a)]
            rows = np.stack([self.i0_cm1 * p * (1.0 + beta * (sk - 1.0)) for sk in s])
            if len(self._cache) > 8:
                self._cache.clear()
            self._cache[key] = rows
        return self._cache[key]

    def curve(self, t_s: float, q_nm: np.ndarray) -> np.ndarray:
        """Noise-free I(q) in cm⁻¹ at time ``t_s`` (s) on ``q_nm`` (nm⁻¹)."""
        x = self.fractions(float(t_s)).as_array()[0]
        return x @ self.components(q_nm) + self.background_cm1

    def series(self, t_s: np.ndarray, q_nm: np.ndarray) -> np.ndarray:
        """Noise-free I(q) for every time in ``t_s``, shape (n_times, n_q), cm⁻¹."""
        x = self.fractions(t_s).as_array()
        return x @ self.components(q_nm) + self.background_cm1

    def measure(self, t_s: float, q_nm: np.ndarray, rng: np.random.Generator | int | None = None,
                counts_per_cm1: float = 2e4) -> SaxsCurve:
        """A measured curve at ``t_s``: counting noise of ``counts_per_cm1`` counts per cm⁻¹ per bin."""
        return _measure(self.curve(t_s, q_nm), q_nm, rng, counts_per_cm1)


def default_q_nm(n: int = 600) -> np.ndarray:
    """The simulated SAXS q grid for self-assembly: 0.2–6 nm⁻¹, linear (nm⁻¹)."""
    return np.linspace(0.2, 6.0, n)


__all__ = [
    "AssemblyModel",
    "LATTICES",
    "PATHWAYS",
    "PHASES",
    "PhaseFractions",
    "Shell",
    "crystal_structure_factor",
    "default_q_nm",
    "lattice_cell",
    "lattice_factor",
    "lattice_reflections",
    "nearest_neighbour_to_a",
    "percus_yevick",
    "polydisperse_sphere",
    "sphere_amplitude",
]
