"""The explorer's web server: a Starlette app over an :class:`~.session.Explorer`.

Safety: the app serves its three page files and the JSON/PNG answers of the API, nothing
else — no request names a file or a model to load (models are the ones the command line
named). Every bad request gets a 4xx JSON error ``{"error": "..."}``; an unexpected
failure a 500 JSON error without a traceback; the server keeps running either way.

Computations run on one background worker thread, so the event loop keeps answering
(cached results are answered without waiting for the worker).

API (σ on the 0–255 scale, pixels ``x`` = column, ``y`` = row)::

    GET  /api/state                                 image size, σ, whether σ can change
    GET  /api/models                                the models, in command-line order,
                                                    each with a short id that every
                                                    ``model=`` parameter accepts
    GET  /api/filter?model=&x=&y=[&sigma=&channel=&precision=&radius=&lane=]
                                                    the filter at a pixel (weights as
                                                    base64 float32, see encode_filter)
    GET  /api/output?model=[&sigma=]                PSNR, timing of the denoised image
    GET  /api/decomposition?model=[&sigma=]         norms of A_y y and b_y
    GET  /api/spectrum?model=&x=&y=[&sigma=&patch=] SVD of the Jacobian of a patch
    GET  /api/eigen?model=[&sigma=]                 eigenvalues of an NTK/NLM filter
    GET  /api/image/KIND?[model=&sigma=&index=]     PNG: noisy clean denoised residual noise-map
                                                    linear bias eigen
    POST /api/upload                                explore another image (raw file body)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import math
import os
import re
import sys
import tempfile
import threading
import traceback
from concurrent.futures import Future
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..analysis.jacobian import Cancelled
from ..errors import FilterscopeError
from .session import FILTER_PRECISIONS, PATCH_RANGE, Explorer, encode_filter

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

#: Largest upload (bytes) and image (pixels) accepted by ``POST /api/upload``.
MAX_UPLOAD_BYTES = 16 << 20
MAX_UPLOAD_PIXELS = 1 << 22
#: Requests waiting for the worker beyond which new ones are refused (503).
MAX_PENDING = 64
#: Worker priorities: filters first, then images, then the slow panels.
URGENT, IMAGES, SLOW = 0, 1, 2
#: Longest query value read, in characters.
MAX_PARAM_CHARS = 64

#: The page: route -> (file in static/, media type). Nothing else is served from disk.
PAGE_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}


class BadRequest(Exception):
    """A request that cannot be answered; becomes a JSON error with ``status``."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _param(request: Request, name: str, *, required: bool = True) -> str | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        if required:
            raise BadRequest(f"missing parameter {name}")
        return None
    if len(value) > MAX_PARAM_CHARS:
        raise BadRequest(f"parameter {name} is too long")
    return value


def _int(request: Request, name: str, *, default: int | None = None) -> int:
    text = _param(request, name, required=default is None)
    if text is None:
        return default  # type: ignore[return-value]
    # ASCII digits only: int() also takes "５", "٣" and "1_0".
    if not re.fullmatch(r"-?[0-9]+", text):
        raise BadRequest(f"parameter {name} must be an integer, got {text!r}")
    return int(text)


def _sigma(request: Request) -> float | None:
    text = _param(request, "sigma", required=False)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"parameter sigma must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise BadRequest(f"parameter sigma must be finite, got {text!r}")
    return value


def release_freed_memory() -> bool:
    """Give the C heap's free pages back to the operating system (glibc's
    ``malloc_trim``); True when that was done, False where there is no glibc.

    A filter's forward and backward passes allocate and free hundreds of MB of
    activations; glibc keeps freed heap memory for reuse, and its free blocks, scattered
    between live ones, are never returned on their own, so the server's resident memory
    would ratchet up with every request. Trimming after each job costs ~10 ms.
    """
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


@functools.cache
def _glibc():
    """The C library, when it is glibc (has ``malloc_trim``); else None."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return None
    return libc


class Worker:
    """One background thread for all computations, most urgent first.

    Jobs wait in a priority queue (lower first, then in order of arrival): a filter the
    user just asked for overtakes a patch spectrum still waiting from an earlier pick.
    At most :data:`MAX_PENDING` jobs wait; more are refused (503).
    """

    def __init__(self):
        self._queue: list = []
        self._count = itertools.count()
        self._ready = threading.Condition()
        self._closed = False
        self.thread = threading.Thread(target=self._loop, name="explore-worker", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if self._closed:
                    return
                _, _, future, function, args, kwargs = heapq.heappop(self._queue)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(function(*args, **kwargs))
            except Cancelled as exc:
                # Its traceback's frames (and the closures of torch's module calls in
                # them) hold the stopped pass's activations and autograd graph, and the
                # request that re-raises it makes a reference cycle: they would live until
                # the garbage collector's next full pass, hundreds of MB after a few dozen
                # superseded filters. The request needs only the exception.
                future.set_exception(exc.with_traceback(None))
            except Exception as exc:  # handed to the request that asked
                # Rare: keep the traceback for the server's log, but not the frames' locals.
                traceback.clear_frames(exc.__traceback__)
                future.set_exception(exc)
            finally:
                del function, args, kwargs
                release_freed_memory()

    def urgent_waiting(self) -> bool:
        """True when a job of the most urgent priority waits (lower-priority work that can
        stop, such as the warm-up, gives way to it)."""
        with self._ready:
            return any(job[0] == URGENT for job in self._queue)

    async def run(self, function, *args, priority: int = 0, **kwargs):
        future: Future = Future()
        with self._ready:
            if len(self._queue) >= MAX_PENDING:
                raise BadRequest("the server is busy; try again shortly", status=503)
            heapq.heappush(
                self._queue, (priority, next(self._count), future, function, args, kwargs)
            )
            self._ready.notify()
        return await asyncio.wrap_future(future)

    def close(self, *, timeout: float = 60.0) -> None:
        """Drop the waiting jobs and wait for the running one (PyTorch must not be
        stopped halfway by the interpreter's exit)."""
        with self._ready:
            self._closed = True
            for _, _, future, *_ in self._queue:
                future.cancel()
            self._queue.clear()
            self._ready.notify()
        self.thread.join(timeout)


async def _cached_or_computed(worker: Worker, priority: int, method, *args, **kwargs):
    """``method(..., compute=False)`` here (checks arguments, answers from the cache),
    else ``method(..., compute=True)`` on the worker thread at ``priority``."""
    found = method(*args, compute=False, **kwargs)
    if found is not None:
        return found
    return await worker.run(method, *args, compute=True, priority=priority, **kwargs)


def decode_upload(data: bytes, *, max_pixels: int = MAX_UPLOAD_PIXELS):
    """Decode an uploaded image file with the checks of ``denoise`` (:func:`io.read_image`).

    The size in the header is checked before the pixels are decoded, so a small file
    that would expand to a huge image is refused cheaply.

    Returns
    -------
    Tensor, shape (1, C, H, W), float32 in [0, 1]
    """
    from PIL import Image, UnidentifiedImageError

    from ..io import read_image, to_tensor

    is_tiff = data[:4] in (b"II*\x00", b"MM\x00*")
    try:
        if is_tiff:
            import tifffile

            with tifffile.TiffFile(_BytesFile(data)) as tif:
                shape = tif.pages[0].shape
            height, width = shape[0], shape[1]
            if len(shape) == 3 and shape[0] in (1, 3, 4) and shape[2] not in (1, 3, 4):
                height, width = shape[1], shape[2]
        else:
            with Image.open(_BytesFile(data)) as img:
                width, height = img.size
    except (UnidentifiedImageError, OSError, ValueError, IndexError, SyntaxError):
        raise BadRequest("the upload is not a readable image file") from None
    except Exception:  # decoders raise many types on hostile input: all mean unreadable
        raise BadRequest("the upload is not a readable image file") from None
    if width * height > max_pixels:
        raise BadRequest(
            f"the uploaded image is {width}x{height} pixels; at most {max_pixels} are accepted",
            status=413,
        )
    suffix = ".tif" if is_tiff else ".png"  # Pillow finds the format from the content
    handle, name = tempfile.mkstemp(suffix=suffix, prefix="filterscope-upload-")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        image, _ = read_image(name)
    finally:
        Path(name).unlink(missing_ok=True)
    return to_tensor(image)


def _BytesFile(data: bytes):
    import io

    return io.BytesIO(data)


class BackgroundServer:
    """uvicorn serving an app on a daemon thread (for notebooks, tests and benchmarks).

    Parameters
    ----------
    app : Starlette
        What :func:`create_app` returns.
    host : str, keyword-only
        Address to bind; the default keeps the page on this machine.
    port : int, keyword-only
        0 picks a free port; :attr:`url` says which.
    """

    def __init__(self, app: Starlette, *, host: str = "127.0.0.1", port: int = 0):
        import threading
        import time

        import uvicorn

        config = uvicorn.Config(app, host=host, port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30.0
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the explorer could not serve on {host}:{port}")
            time.sleep(0.02)
        bound = self.server.servers[0].sockets[0].getsockname()
        self.url = f"http://{host}:{bound[1]}/"

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        self.server.should_exit = True
        self.thread.join(timeout=10.0)


def create_app(
    explorer: Explorer,
    *,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_upload_pixels: int = MAX_UPLOAD_PIXELS,
    warm_up: bool = True,
) -> Starlette:
    """The Starlette app serving ``explorer``'s page and API.

    Parameters
    ----------
    explorer : Explorer
        The image and models; the app never loads anything else.
    max_upload_bytes, max_upload_pixels : int, keyword-only
        Bounds of ``POST /api/upload``.
    warm_up : bool, keyword-only
        At start, compute one filter per network in the background
        (:meth:`Explorer.warm_up`) so that the first click is as fast as the next.
    """
    api = _Api(explorer, Worker(), max_upload_bytes, max_upload_pixels, warm_up)
    app = Starlette(
        routes=_routes(api),
        exception_handlers={
            BadRequest: _bad_request,
            FilterscopeError: _user_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
        lifespan=api.lifespan,
    )
    app.state.explorer = explorer
    app.state.worker = api.worker
    app.state.patch_range = PATCH_RANGE
    return app


@dataclass
class _Api:
    """The request handlers of one app: the explorer they answer about, the worker that
    computes, and the upload bounds."""

    explorer: Explorer
    worker: Worker
    max_upload_bytes: int
    max_upload_pixels: int
    warm_up: bool
    static: Traversable = field(
        default_factory=lambda: resources.files("filterscope.explore") / "static"
    )

    async def page(self, request: Request) -> Response:
        name, media_type = PAGE_FILES[request.url.path]
        return Response((self.static / name).read_bytes(), media_type=media_type)

    async def state(self, request: Request) -> Response:
        return JSONResponse(self.explorer.state())

    def __post_init__(self):
        # Short ids for requests: a checkpoint's path can be longer than a parameter may be.
        self.ids = {f"m{k}": name for k, name in enumerate(self.explorer.models)}
        # The latest filter request per model: an older one still computing stops.
        self.latest: dict[tuple, int] = {}
        self.requests = itertools.count(1)

    def model_name(self, request: Request, *, required: bool = True) -> str | None:
        """The ``model`` parameter: a model's id (``m0``...) or any name it lists."""
        value = request.query_params.get("model")
        if value is None or value == "":
            if required:
                raise BadRequest("missing parameter model")
            return None
        if value in self.ids:
            return self.ids[value]
        if value in self.explorer.models:
            return value
        if len(value) > MAX_PARAM_CHARS:
            raise BadRequest("parameter model is too long (and not a listed model)")
        return value  # the explorer names the listed models in its error

    async def models(self, request: Request) -> Response:
        listed = []
        for model_id, name in self.ids.items():
            listed.append({"id": model_id, **self.explorer.models[name].to_dict()})
        return JSONResponse({"models": listed})

    async def filter_(self, request: Request) -> Response:
        name = self.model_name(request)
        x, y = _int(request, "x"), _int(request, "y")
        sigma = _sigma(request)
        channel = _int(request, "channel", default=0)
        radius = _int(request, "radius", default=-1)
        radius = None if radius == -1 else radius
        precision = _param(request, "precision", required=False) or "exact"
        if precision not in FILTER_PRECISIONS:
            raise BadRequest(f"parameter precision must be one of {', '.join(FILTER_PRECISIONS)}")
        options = {"channel": channel, "precision": precision, "radius": radius}
        found = self.explorer.filter(name, x, y, sigma, compute=False, **options)
        if found is None:
            # Requests of one lane (the page's cards, its sigma row...) for one model and
            # sigma supersede each other: a newer pixel stops the older computation.
            lane = (name, sigma, _param(request, "lane", required=False) or "main")
            number = next(self.requests)
            self.latest[lane] = number
            gone = threading.Event()

            def should_stop() -> bool:  # a newer pixel in this lane, or the client left
                return self.latest.get(lane) != number or gone.is_set()

            job = asyncio.ensure_future(
                self.worker.run(
                    self.explorer.filter,
                    name,
                    x,
                    y,
                    sigma,
                    priority=URGENT,
                    should_stop=should_stop,
                    **options,
                )
            )
            while not job.done():
                await asyncio.wait({job}, timeout=0.1)
                if not job.done() and await _disconnected(request):
                    gone.set()
            try:
                found = job.result()
            except Cancelled:
                message = "superseded by a newer request" if not gone.is_set() else "abandoned"
                raise BadRequest(f"this filter was not computed: {message}", status=409) from None
        return JSONResponse(encode_filter(found))

    async def output(self, request: Request) -> Response:
        found = await _cached_or_computed(
            self.worker, IMAGES, self.explorer.output, self.model_name(request), _sigma(request)
        )
        return JSONResponse(found["info"])

    async def decomposition(self, request: Request) -> Response:
        found = await _cached_or_computed(
            self.worker,
            SLOW,
            self.explorer.decomposition,
            self.model_name(request),
            _sigma(request),
        )
        return JSONResponse(found["info"])

    async def spectrum(self, request: Request) -> Response:
        arguments = (self.model_name(request), _int(request, "x"), _int(request, "y"))
        sigma = _sigma(request)
        patch = _int(request, "patch", default=self.explorer.state()["patch"])
        found = self.explorer.spectrum(*arguments, sigma, patch=patch, compute=False)
        if found is None:
            try:  # a slow panel: it gives way to any filter the page asks for
                found = await self.worker.run(
                    self.explorer.spectrum,
                    *arguments,
                    sigma,
                    patch=patch,
                    should_stop=self.worker.urgent_waiting,
                    priority=SLOW,
                )
            except Cancelled:
                raise BadRequest("the spectrum gave way to a filter request", status=409) from None
        return JSONResponse(found)

    async def eigen(self, request: Request) -> Response:
        found = await _cached_or_computed(
            self.worker, SLOW, self.explorer.eigenimages, self.model_name(request), _sigma(request)
        )
        return JSONResponse(found["info"])

    async def image(self, request: Request) -> Response:
        data = await _cached_or_computed(
            self.worker,
            IMAGES,
            self.explorer.picture,
            request.path_params["kind"],
            self.model_name(request, required=False),
            _sigma(request),
            index=_int(request, "index", default=0),
        )
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def upload(self, request: Request) -> Response:
        limit = self.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise BadRequest(f"uploads are limited to {limit} bytes", status=413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BadRequest(f"uploads are limited to {limit} bytes", status=413)
            chunks.append(chunk)
        if size == 0:
            raise BadRequest("the upload is empty: send the image file as the request body")
        tensor = await self.worker.run(
            decode_upload, b"".join(chunks), max_pixels=self.max_upload_pixels
        )
        await self.worker.run(self.explorer.replace_image, tensor)
        return JSONResponse(self.explorer.state())

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette):
        if self.warm_up:  # on the worker, giving way to any filter the page asks for
            warming = asyncio.ensure_future(
                self.worker.run(
                    self.explorer.warm_up, should_stop=self.worker.urgent_waiting, priority=SLOW
                )
            )
            # A failure shows again, as a 4xx, when the page asks for that filter itself.
            warming.add_done_callback(lambda done: done.cancelled() or done.exception())
        yield
        self.worker.close()


def _routes(api: _Api) -> list[Route]:
    routes = [Route(path, api.page) for path in PAGE_FILES]
    routes += [
        Route("/api/state", api.state),
        Route("/api/models", api.models),
        Route("/api/filter", api.filter_),
        Route("/api/output", api.output),
        Route("/api/decomposition", api.decomposition),
        Route("/api/spectrum", api.spectrum),
        Route("/api/eigen", api.eigen),
        Route("/api/image/{kind}", api.image),
        Route("/api/upload", api.upload, methods=["POST"]),
    ]
    return routes


async def _disconnected(request: Request) -> bool:
    """Whether the client has gone (closed the connection or aborted the request)."""
    try:
        return await asyncio.wait_for(request.is_disconnected(), timeout=0.01)
    except (asyncio.TimeoutError, RuntimeError):
        return False


async def _bad_request(request: Request, exc: Exception) -> Response:
    return _error(str(exc), exc.status)  # type: ignore[attr-defined]


async def _user_error(request: Request, exc: Exception) -> Response:
    return _error(str(exc), 400)


async def _http_error(request: Request, exc: Exception) -> Response:
    detail = getattr(exc, "detail", "error")
    return _error(str(detail), getattr(exc, "status_code", 400))


async def _server_error(request: Request, exc: Exception) -> Response:
    # The traceback goes to the server's log (uvicorn), never to the client.
    return _error(f"internal error ({type(exc).__name__})", 500)
