"""The simulator's space: grid, brain mask, smooth fields and the blob maps of the sources."""
from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage

from .params import FMRISimParams

__all__ = ["mni_like_affine", "brain_mask", "smooth_field", "blob_specs", "render"]


def mni_like_affine(shape: tuple[int, int, int], voxel_size: float) -> np.ndarray:
    """RAS affine with isotropic ``voxel_size`` whose grid centre lies at about
    (0, -18, 10) mm, as in MNI space."""
    aff = np.diag([voxel_size, voxel_size, voxel_size, 1.0])
    centre = (np.asarray(shape, float) - 1) / 2
    aff[:3, 3] = np.array([0.0, -18.0, 10.0]) - voxel_size * centre
    return aff


def smooth_field(shape: tuple[int, ...], sigma: float, rng: np.random.Generator) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (f - f.mean()) / (f.std() + 1e-12)


def brain_mask(shape: tuple[int, int, int], rng: np.random.Generator,
               irregularity: float = 0.06) -> np.ndarray:
    """A brain-shaped boolean mask: an ellipsoid (longer front to back) with a flattened
    base, a smooth random perturbation of its surface and a shallow midline fissure."""
    nx, ny, nz = shape
    ii, jj, kk = np.meshgrid(*(np.arange(n, dtype=float) for n in shape), indexing="ij")
    cx, cy, cz = (nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2 + 0.04 * nz
    ax, ay, az = 0.42 * nx, 0.44 * ny, 0.40 * nz
    x, y, z = (ii - cx) / ax, (jj - cy) / ay, (kk - cz) / az
    r = np.sqrt(x ** 2 + y ** 2 + z ** 2)
    r = r + irregularity * smooth_field(shape, 2.5, rng)
    mask = r < 1.0
    mask &= z > -0.75 + 0.25 * np.clip(y, 0, None)                      # flattened base, orbitofrontal cut
    mask &= ~((np.abs(ii - cx) < 0.6) & (z > 0.55))                     # interhemispheric fissure
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum(mask, labels, range(1, n + 1))
        mask = labels == (1 + int(np.argmax(sizes)))
    return mask


def blob_specs(p: FMRISimParams, mask: np.ndarray, coords: np.ndarray, affine: np.ndarray,
                rng: np.random.Generator) -> list[list[tuple[np.ndarray, float, float]]]:
    """For each component, a list of blobs ``(centre_mm, sigma_mm, amplitude)``.

    Main blob centres lie at least 2 voxels inside the mask and are spread out (greedy
    rejection with a decreasing minimum distance). Half of the components get a mirror
    blob in the other hemisphere, about 40 % a negative lobe."""
    depth = ndimage.distance_transform_edt(mask)
    inner = np.argwhere(depth >= 2.5)
    inner_mm = nib.affines.apply_affine(affine, inner)
    mid_x = affine[0, 3] + affine[0, 0] * (mask.shape[0] - 1) / 2
    fwhm_to_sigma = 1 / (2 * np.sqrt(2 * np.log(2)))
    centres: list[np.ndarray] = []
    min_dist = 0.45 * (np.prod(np.ptp(coords, axis=0)) / p.n_components) ** (1 / 3)
    for _ in range(p.n_components):
        for attempt in range(200):
            c = inner_mm[rng.integers(len(inner_mm))]
            d = min((np.linalg.norm(c - o) for o in centres), default=np.inf)
            if d >= min_dist * (0.97 ** attempt):
                centres.append(c)
                break
        else:  # pragma: no cover - tiny masks only
            centres.append(c)
    specs = []
    for c in centres:
        sigma = rng.uniform(*p.blob_fwhm) * fwhm_to_sigma
        blobs = [(c, sigma, 1.0)]
        if rng.random() < 0.5 and abs(c[0] - mid_x) > 1.5 * p.voxel_size:
            mirror = c.copy()
            mirror[0] = 2 * mid_x - c[0]
            blobs.append((mirror, sigma * rng.uniform(0.8, 1.1), rng.uniform(0.6, 1.0)))
        if rng.random() < 0.4:
            direction = rng.standard_normal(3)
            direction /= np.linalg.norm(direction)
            neg = c + direction * rng.uniform(2.0, 3.0) * sigma
            # keep the lobe inside the brain: pull it towards the nearest inner voxel
            neg = inner_mm[np.argmin(np.linalg.norm(inner_mm - neg, axis=1))]
            blobs.append((neg, sigma * rng.uniform(0.7, 1.0), -rng.uniform(0.3, 0.6)))
        specs.append(blobs)
    return specs


def render(blobs: list[tuple[np.ndarray, float, float]], coords: np.ndarray) -> np.ndarray:
    m = np.zeros(len(coords))
    for c, sigma, amp in blobs:
        m += amp * np.exp(-np.sum((coords - c) ** 2, axis=1) / (2 * sigma ** 2))
    return m / np.abs(m).max()
