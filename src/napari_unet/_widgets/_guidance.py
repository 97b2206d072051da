"""The "Where next" part of the *Train* widget: the view jumps to where painting helps most.

A click on *Where next?* (or the key :data:`WHERE_NEXT_KEY`) moves the camera (centre
and zoom) and, in a stack, the current plane to the next predicted cell (or uncertain
region) not annotated yet, in the order of the core's default ranking (typical cells
spread over the image first, uncertain ones as painted cells grow); the next click to
the next one; in a stack, once a plane has none left, the following planes in turn. The
ranking is computed in a worker by the Qt-free core
(:func:`~napari_unet.live.guidance.iter_rank_plane`,
:class:`~napari_unet.live.guidance.GuidanceTour`)
with the network the live preview shows (the latest snapshot while training), the
session's model, or the shipped default before any training.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from magicgui.widgets import Container, PushButton

from ._common import displayed_plane, full_resolution, message_label, same_layer, spatial_shape
from ._lifetime import WidgetLifetime

#: Key (on the viewer) that moves the view to the next place to paint.
WHERE_NEXT_KEY = "w"
#: The view shows this many times the candidate's size (at least :data:`MIN_VIEW_PX`).
VIEW_MARGIN = 4.0
#: Smallest side of the view around a candidate, pixels.
MIN_VIEW_PX = 96


class WhereNext(Container):
    """A button and a key that move the view to the next unannotated cell to paint.

    Parameters
    ----------
    viewer : napari.Viewer
    pair : callable
        Returns ``(image_layer, annotation_layer)``; raises ``ValueError`` (with a
        message for the user) when there is none.
    preview : LivePreview
        The live preview: its model, device and CPU threads are used.
    session : UNetSession
        Its model is used when the preview has none.
    """

    def __init__(self, viewer, pair: Callable, preview, session):
        from napari_unet.live.guidance import GuidanceTour

        super().__init__(labels=False)
        self.margins = (0, 0, 0, 0)
        self._viewer = viewer
        self._pair = pair
        self._preview = preview
        self._session = session
        self._lifetime = WidgetLifetime(self.native)
        self.tour = GuidanceTour()
        self._ranked = None  # (image layer, plane, model, time) of the tour's ranking
        self._default_model = None
        self._asked = None  # (image, annotation, plane, model, time) of the running ranking
        self._found = False  # the running ranking returned
        self._planes_left = 0  # planes still to try before "nothing left"
        self.button = PushButton(text=f"Where next? (key: {WHERE_NEXT_KEY.upper()})")
        self.button.tooltip = (
            "Show a predicted cell (or unsure patch) to paint next that is not annotated yet: "
            "first typical cells spread over the image, then, as you paint more, the ones "
            "the network is least sure of. Again: the next one."
        )
        self.status = message_label()
        self.extend([self.button, self.status])
        self.button.changed.connect(self._lifetime.guard(self.go_next))
        viewer.bind_key(WHERE_NEXT_KEY, self._lifetime.guard(self._on_key), overwrite=True)

    @property
    def ranking(self) -> bool:
        """Whether a ranking runs now."""
        return self._lifetime.running

    def go_next(self, *_):
        """Move the view to the next candidate; rank first (in a worker) when needed.

        Returns the :class:`~napari_unet.live.guidance.Candidate` shown, or ``None``
        (ranking started, nothing left, or the reason is in :attr:`status`).
        """
        from napari_unet.live.guidance import RERANK_INTERVAL_S

        if self._lifetime.running:
            return None
        try:
            image, annotation = self._pair()
        except ValueError as error:
            self.status.value = f"Choose the image and annotation first: {error}."
            return None
        plane = displayed_plane(self._viewer, image)
        model = self._model()
        ranked = self._ranked
        fresh = (
            ranked is not None
            and same_layer(ranked[0], image)
            and ranked[1] == plane
            and (ranked[2] is model or time.monotonic() - ranked[3] < RERANK_INTERVAL_S)
        )
        if fresh and self.tour.remaining(self._annotation_plane(annotation, plane)):
            return self._show_next(image, annotation, plane)
        if ranked is not None and not same_layer(ranked[0], image):
            self.tour.forget()
        if fresh:  # this plane is done: the following ones, in turn, until one has some
            plane = self._following(image, plane)
        self._planes_left = self._n_planes(image)
        self._rank(image, annotation, plane, model)
        return None

    # -- internals ---------------------------------------------------------------------
    def _model(self):
        model = self._preview.model or self._session.model
        if model is None:
            if self._default_model is None:
                from napari_unet.models.files import load_model

                self._default_model = load_model()
            model = self._default_model
        return model

    def _rank(self, image, annotation, plane, model) -> None:
        from napari_unet.live.guidance import iter_rank_plane
        from napari_unet.live.preview import ViewRegion, plane_of

        data = full_resolution(image)
        whole = ViewRegion((), 0, 0, 1, 1)  # plane_of reads the whole plane of a 2D array
        gray = np.array(plane_of(data[plane] if plane else data, whole, bool(image.rgb)))
        marks = np.array(self._annotation_plane(annotation, plane), copy=True)
        self.status.value = "Finding where to paint next…"
        self._asked = (image, annotation, plane, model, time.monotonic())
        self._lifetime.run(
            self._preview.threads.preview,  # on the preview's share of the CPU threads
            iter_rank_plane(gray, model, marks, plane_index=plane, device=self._preview.device),
            returned=self._on_ranked,
            errored=self._on_errored,
            finished=self._after_ranking,
        )

    def _on_ranked(self, found) -> None:
        image, annotation, plane, model, started = self._asked
        self.tour.update(found)
        self._ranked = (image, plane, model, started)
        self._found = True

    def _after_ranking(self) -> None:
        """Show the next candidate, or rank the following plane when this one has none."""
        found, self._found = self._found, False
        image, annotation, plane, model, _ = self._asked
        if not found or image not in self._viewer.layers:
            return
        self._planes_left -= 1
        if not self.tour.remaining(self._annotation_plane(annotation, plane)) and self._planes_left:
            self._rank(image, annotation, self._following(image, plane), model)
            return
        self._show_next(image, annotation, plane)

    def _n_planes(self, image) -> int:
        return int(np.prod(spatial_shape(image)[:-2], dtype=np.int64))

    def _following(self, image, plane: tuple[int, ...]) -> tuple[int, ...]:
        """The plane after ``plane`` (the last leading axis fastest; the first after the last)."""
        if not plane:
            return plane
        shape = full_resolution(image).shape[: len(plane)]
        flat = (np.ravel_multi_index(plane, shape) + 1) % int(np.prod(shape))
        return tuple(int(i) for i in np.unravel_index(flat, shape))

    def _on_errored(self, error: Exception) -> None:
        from napari.utils.notifications import show_error

        self.status.value = "Where next failed (see the notification)."
        show_error(f"Where next failed: {error}")

    def _show_next(self, image, annotation, plane):
        candidate = self.tour.next(self._annotation_plane(annotation, plane))
        if candidate is None:
            self.status.value = "Every predicted cell here is annotated or was shown."
            return None
        self._move_to(image, candidate)
        left = len(self.tour.remaining())
        self.status.value = (
            f"{'cell' if candidate.kind == 'cell' else 'unsure patch'} · confidence "
            f"{candidate.confidence:.2f} · {left} more to show"
        )
        return candidate

    def _move_to(self, image, candidate) -> None:
        """Centre the camera on the candidate, zoomed to a few times its size."""
        cy, cx = candidate.center
        point = image.data_to_world((*candidate.plane, cy, cx))
        viewer = self._viewer
        n_leading = len(candidate.plane)
        if n_leading:
            step = list(viewer.dims.point)
            leading = len(step) - 2
            for i in range(n_leading):
                step[leading - n_leading + i] = float(point[i])
            viewer.dims.point = step
        top, left, bottom, right = candidate.box
        scale = np.abs(np.asarray(image.scale[-2:], dtype=float))
        side = np.maximum(np.array([bottom - top, right - left]) * VIEW_MARGIN, MIN_VIEW_PX)
        extent = side * scale  # world units
        canvas = np.asarray(viewer.canvas.size, dtype=float)
        viewer.scene.camera.center = tuple(float(v) for v in point[-2:])
        viewer.scene.camera.zoom = float(np.min(canvas / extent))

    @staticmethod
    def _annotation_plane(annotation, plane) -> np.ndarray:
        return np.asarray(annotation.data[plane] if plane else annotation.data)

    def _on_key(self, _viewer=None) -> None:
        self.go_next()
