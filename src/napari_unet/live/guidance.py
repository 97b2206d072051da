"""Where to paint next: predicted cells and uncertain regions of a plane, not yet annotated.

Active learning on one plane: "annotate where the model is unsure" (Settles 2009,
"Active Learning Literature Survey", sec. 3.1, uncertainty sampling), preceded, while
few cells are painted, by typical cells spread over the image (Hacohen et al. 2022,
:mod:`napari_unet.method.typicality`):

- :func:`rank_candidates` turns a prediction (labels and the per-pixel uncertainty of
  :mod:`napari_unet.method.uncertainty`) into candidates in the order of a ranking
  (:data:`RANKINGS`): every predicted cell, and every *uncertain region* (a patch of
  background where the network hesitates, often a cell it missed);
- :class:`GuidanceTour` hands them out one by one ("Where next"), skipping those the
  user annotated since and those shown already, also across a new ranking made with a
  newer network.

:data:`DEFAULT_MIN_CONFIDENCE` is the confidence above which "accept all cells in the
view / box" takes a predicted cell by default.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from napari_unet.method.annotation import FIRST_CELL
from napari_unet.method.typicality import cell_features, spread_order
from napari_unet.method.uncertainty import cell_confidence

__all__ = [
    "DEFAULT_MIN_CONFIDENCE",
    "DEFAULT_RANKING",
    "RANKINGS",
    "Candidate",
    "GuidanceTour",
    "confident_cells",
    "iter_rank_plane",
    "rank_candidates",
]

#: Smallest cell confidence (mean ``1 - entropy`` over the cell) that accept-by-view and
#: accept-by-box take by default. Measured with ``benchmarks/bench_uncertainty.py``
#: (docs/benchmarks.md, "Uncertainty and confidence"): on the val splits of BBBC039,
#: DSB2018 and Usiigaci, the cells above it were >= 95 % correct (IoU >= 0.5).
DEFAULT_MIN_CONFIDENCE = 0.6
#: The orders "Where next" can show candidates in: ``"mixed"``, typical cells spread over
#: the kinds of cells and the image first, turning to uncertain ones as painted cells grow
#: (:func:`napari_unet.method.typicality.spread_order`); ``"uncertain"``, least confident
#: first (uncertainty sampling).
RANKINGS = ("mixed", "uncertain")
#: Chosen with ``benchmarks/bench_guidance.py`` (docs/benchmarks.md, "Does 'Where next' help?").
DEFAULT_RANKING = "mixed"
#: Seconds after which "Where next" ranks again with a newer network (while training,
#: a new snapshot comes every few seconds; ranking a whole plane takes about as long).
RERANK_INTERVAL_S = 30.0
#: Pixel uncertainty above which a background pixel belongs to an uncertain region.
REGION_UNCERTAINTY = 0.5
#: A candidate counts as annotated when at least this share of its pixels is annotated.
ANNOTATED_SHARE = 0.5


@dataclass(frozen=True, eq=False)
class Candidate:
    """A predicted cell or uncertain region to show the user.

    Attributes
    ----------
    plane : tuple of int
        Indices of the leading axes (``()`` for a 2D image).
    box : (top, left, bottom, right)
        Bounding box in pixels of the plane (bottom, right exclusive).
    mask : np.ndarray
        bool, the box's shape: the candidate's pixels.
    confidence : float
        Mean ``1 - uncertainty`` over its pixels, in [0, 1].
    label : int
        The predicted cell id, or 0 for an uncertain region.
    """

    plane: tuple[int, ...]
    box: tuple[int, int, int, int]
    mask: np.ndarray
    confidence: float
    label: int

    @property
    def kind(self) -> str:
        """``"cell"`` or ``"region"``."""
        return "cell" if self.label else "region"

    @property
    def center(self) -> tuple[float, float]:
        """Its pixel ``(y, x)`` nearest to its centroid, in pixels of the plane.

        A pixel of the candidate itself: the centroid of a ring-shaped region lies
        outside it.
        """
        ys, xs = np.nonzero(self.mask)
        nearest = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
        return (float(ys[nearest] + self.box[0]), float(xs[nearest] + self.box[1]))

    def index(self) -> tuple:
        """Index of its box in an array of the plane's leading axes and (Y, X)."""
        top, left, bottom, right = self.box
        return (*self.plane, slice(top, bottom), slice(left, right))

    def annotated_share(self, annotation: np.ndarray) -> float:
        """Share of its pixels annotated (!= 0) in ``annotation`` (all planes, or one)."""
        annotation = np.asarray(annotation)
        index = self.index() if annotation.ndim > 2 else self.index()[-2:]
        return float((annotation[index][self.mask] != 0).mean())

    def contains(self, plane: tuple[int, ...], point: tuple[float, float]) -> bool:
        """Whether pixel ``point`` ``(y, x)`` of ``plane`` lies in the candidate."""
        y, x = int(round(point[0])) - self.box[0], int(round(point[1])) - self.box[1]
        if tuple(plane) != self.plane or not (0 <= y < self.mask.shape[0]):
            return False
        return 0 <= x < self.mask.shape[1] and bool(self.mask[y, x])


def _boxes(labels, ids, plane, confidence, cells: bool = True) -> list[Candidate]:
    """Candidates of the objects ``ids`` of ``labels``: cells, or (``cells=False``) regions."""
    slices = ndi.find_objects(labels)
    out = []
    for cell, conf in zip(ids, confidence, strict=True):
        sl = slices[int(cell) - 1]
        box = (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop)
        label = int(cell) if cells else 0
        out.append(Candidate(plane, box, labels[sl] == cell, float(conf), label))
    return out


def rank_candidates(
    labels: np.ndarray,
    uncertainty: np.ndarray,
    annotation: np.ndarray | None = None,
    *,
    plane: tuple[int, ...] = (),
    min_region: int = 32,
    region_uncertainty: float = REGION_UNCERTAINTY,
    image: np.ndarray | None = None,
    ranking: str = DEFAULT_RANKING,
) -> list[Candidate]:
    """Predicted cells and uncertain regions of one plane, in the order to show them.

    Parameters
    ----------
    labels : np.ndarray
        int ``(Y, X)`` predicted cells, 0 = background.
    uncertainty : np.ndarray
        float ``(Y, X)`` per-pixel uncertainty in [0, 1]
        (:func:`~napari_unet.method.uncertainty.pixel_uncertainty`).
    annotation : np.ndarray, optional
        ``(Y, X)`` partial annotation (0 = not annotated); candidates with at least
        :data:`ANNOTATED_SHARE` of their pixels annotated are left out.
    plane : tuple of int
        Leading-axis indices the plane has in its stack, stored in the candidates.
    min_region : int
        Smallest uncertain region, pixels (the model's smallest cell is a good value).
    region_uncertainty : float
        Background pixels more uncertain than this form the uncertain regions.
    image : np.ndarray, optional
        ``(Y, X)`` gray plane: its intensities join the features of ``"mixed"``.
    ranking : str
        One of :data:`RANKINGS`. ``"uncertain"``: by confidence, lowest first (ties by
        position, top to bottom). ``"mixed"``: :func:`~napari_unet.method.typicality.
        spread_order`, with the cells painted in ``annotation`` as those picked before.

    Returns
    -------
    list of Candidate
        In the order to show them.

    Raises
    ------
    ValueError
        If the arrays are not 2D planes of the same shape, or ``ranking`` is unknown.
    """
    if ranking not in RANKINGS:
        raise ValueError(f"ranking must be one of {RANKINGS}, got {ranking!r}")
    labels = np.asarray(labels)
    uncertainty = np.asarray(uncertainty, dtype=np.float32)
    if labels.ndim != 2 or labels.shape != uncertainty.shape:
        raise ValueError(
            f"labels {labels.shape} and uncertainty {uncertainty.shape} must be 2D planes "
            "of the same shape"
        )
    if annotation is not None and np.shape(annotation) != labels.shape:
        raise ValueError(f"annotation {np.shape(annotation)} and labels {labels.shape} differ")
    plane = tuple(int(i) for i in plane)
    labels = labels.astype(np.int64, copy=False)
    ids, confidence = cell_confidence(labels, uncertainty)
    found = _boxes(labels, ids, plane, confidence)
    regions, n = ndi.label((labels == 0) & (uncertainty > region_uncertainty))
    if n:
        sizes = np.bincount(regions.ravel())
        regions[sizes[regions] < min_region] = 0
        region_ids, region_conf = cell_confidence(regions, uncertainty)
        found += _boxes(regions, region_ids, plane, region_conf, cells=False)
    if annotation is not None:
        found = [c for c in found if c.annotated_share(annotation) < ANNOTATED_SHARE]
    found.sort(key=lambda c: (c.confidence, c.box[0], c.box[1]))
    if ranking == "mixed" and found:
        found = _mixed(found, labels, uncertainty, annotation, image)
    return found


def _mixed(found, labels, uncertainty, annotation, image) -> list[Candidate]:
    """``found`` in :func:`~napari_unet.method.typicality.spread_order`'s order."""
    is_cell = np.array([c.label > 0 for c in found])
    ids = np.array([c.label for c in found], np.int64)
    confidence = np.array([c.confidence for c in found])
    features = cell_features(labels, ids[is_cell], confidence[is_cell], image)
    all_features = np.zeros((len(found), features.shape[1]))
    all_features[is_cell] = features
    centres = np.array([c.center for c in found])
    painted = np.zeros((0, features.shape[1])), np.zeros((0, 2))
    if annotation is not None:
        marks = np.asarray(annotation).astype(np.int64)
        marks = np.where(marks >= FIRST_CELL, marks, 0)
        painted_ids, painted_conf = cell_confidence(marks, uncertainty)
        if painted_ids.size:
            painted = (
                cell_features(marks, painted_ids, painted_conf, image),
                np.array(ndi.center_of_mass(np.ones(marks.shape), marks, painted_ids)),
            )
    areas = np.bincount(labels.ravel())[1:]
    diameter = 2 * np.sqrt(np.median(areas[areas > 0]) / np.pi) if areas.any() else 1.0
    order = spread_order(all_features, centres, 1 - confidence, is_cell, *painted, diameter)
    return [found[i] for i in order]


def confident_cells(ids, known_ids, confidence, min_confidence: float) -> np.ndarray:
    """The ``ids`` whose confidence is at least ``min_confidence``.

    Parameters
    ----------
    ids : array-like of int
        Cells to filter (e.g. those entirely inside a box).
    known_ids, confidence : array-like
        A confidence table: cell ids and their confidence in [0, 1]
        (:func:`~napari_unet.method.uncertainty.cell_confidence`; the preview layer's
        ``features``). A cell missing from it is left out.
    min_confidence : float
        In [0, 1]; 0 keeps every cell.

    Returns
    -------
    np.ndarray
        int64, the kept ids in the order given.

    Raises
    ------
    ValueError
        If ``min_confidence`` is not in [0, 1] or the table's columns differ in length.
    """
    if not 0.0 <= float(min_confidence) <= 1.0:
        raise ValueError(f"min_confidence must lie in [0, 1], got {min_confidence}")
    ids = np.asarray(ids, dtype=np.int64).ravel()
    known_ids = np.asarray(known_ids, dtype=np.int64).ravel()
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    if known_ids.shape != confidence.shape:
        raise ValueError(f"{known_ids.size} cell ids but {confidence.size} confidences")
    if min_confidence <= 0:
        return ids
    keep = known_ids[confidence >= min_confidence]
    return ids[np.isin(ids, keep)]


def iter_rank_plane(
    plane: np.ndarray,
    model,
    annotation: np.ndarray | None = None,
    *,
    plane_index: tuple[int, ...] = (),
    device="cpu",
    ranking: str = DEFAULT_RANKING,
) -> Generator[object, None, list[Candidate]]:
    """Segment a whole plane and rank its candidates: a generator like the others.

    Parameters
    ----------
    plane : np.ndarray
        ``(Y, X)`` gray plane (:func:`~napari_unet.live.preview.plane_of`).
    model : UNet
        Not modified.
    annotation : np.ndarray, optional
        ``(Y, X)`` annotation of the plane (candidates annotated already are left out).
    plane_index : tuple of int
        Leading-axis indices of the plane in its stack.
    device : str or torch.device
        Where the network runs.
    ranking : str
        One of :data:`RANKINGS` (:func:`rank_candidates`).

    Yields
    ------
    SegmentProgress

    Returns
    -------
    list of Candidate
        :func:`rank_candidates` of the plane.
    """
    from napari_unet.inference.segment import InstanceSettings, iter_segment

    result = yield from iter_segment(plane, model, device=device, rgb=False, uncertainty=True)
    return rank_candidates(
        result.labels,
        result.uncertainty,
        annotation,
        plane=plane_index,
        min_region=InstanceSettings.for_model(model).min_size,
        image=plane,
        ranking=ranking,
    )


class GuidanceTour:
    """Hands out candidates one by one, in the ranking's order ("Where next").

    A new ranking (:meth:`update`, e.g. from a newer network) replaces the list; the
    places shown already are remembered, so that a candidate covering one of them is
    not shown again.
    """

    def __init__(self) -> None:
        self._candidates: list[Candidate] = []
        self._shown: list[tuple[tuple[int, ...], tuple[float, float]]] = []
        self._given: set[int] = set()

    @property
    def candidates(self) -> list[Candidate]:
        """The current ranking, first to show first (shown ones included)."""
        return list(self._candidates)

    @property
    def n_shown(self) -> int:
        """Candidates handed out so far."""
        return len(self._shown)

    def update(self, candidates: list[Candidate]) -> None:
        """Replace the ranking (keeps the memory of what was shown)."""
        self._candidates = list(candidates)
        self._given: set[int] = set()  # ids of the candidates of this list handed out

    def forget(self) -> None:
        """Forget what was shown (a new image, or the user asks to start over)."""
        self._shown.clear()
        self._given.clear()

    def remaining(self, annotation: np.ndarray | None = None) -> list[Candidate]:
        """Candidates not shown yet and (when given) not annotated now, in order."""
        return [c for c in self._candidates if self._fresh(c, annotation)]

    def next(self, annotation: np.ndarray | None = None) -> Candidate | None:
        """The first candidate not shown yet and not annotated in ``annotation``.

        Parameters
        ----------
        annotation : np.ndarray, optional
            The annotation now (the plane, or all planes of a stack).

        Returns
        -------
        Candidate or None
            ``None`` when every candidate was shown or annotated.
        """
        for candidate in self._candidates:
            if self._fresh(candidate, annotation):
                self._shown.append((candidate.plane, candidate.center))
                self._given.add(id(candidate))
                return candidate
        return None

    def _fresh(self, candidate: Candidate, annotation) -> bool:
        if id(candidate) in self._given:
            return False
        if any(candidate.contains(plane, point) for plane, point in self._shown):
            return False
        if annotation is None:
            return True
        return candidate.annotated_share(annotation) < ANNOTATED_SHARE
