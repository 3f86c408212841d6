"""``filterscope explore``: a local web page to click a pixel and see each model's filter.

Needs the optional packages of ``filterscope[explore]`` (Starlette and uvicorn).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import threading
import time
import webbrowser

from ..errors import InputError
from ._common import add_device_option, add_trust_code_option

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "explore",
        help="local web page: click a pixel, see each model's adaptive filter there",
        description=(
            "Serve a local page showing IMAGE (a noisy photo, analysed as given) denoised by "
            "each --model, and the filter each model applies at a pixel you click. With "
            "--clean CLEAN --sigma S instead of IMAGE, noise of level S is added to CLEAN "
            "from --seed, PSNR is shown and a slider changes σ. Needs "
            "`pip install 'filterscope[explore]'`."
        ),
    )
    p.add_argument("image", nargs="?", metavar="IMAGE", help="noisy image (omit with --clean)")
    p.add_argument(
        "--model",
        action="append",
        default=None,
        metavar="M",
        help="any model of `filterscope models`, a checkpoint path or package.module:attr: "
        "networks show their Jacobian, ntk and nlm-twicing their non-local filter, bm3d "
        "and nlm their output only; repeat to compare (default: the shipped default model)",
    )
    add_trust_code_option(p)
    p.add_argument("--clean", default=None, metavar="CLEAN", help="clean image to add noise to")
    p.add_argument("--sigma", type=float, default=None, help="noise std on the 0-255 scale")
    p.add_argument("--seed", type=int, default=0, help="seed of the added noise (default 0)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    add_device_option(p, what="the networks")
    p.set_defaults(run=run)


def _require_web_packages() -> None:
    missing = [name for name in ("starlette", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(
            f"filterscope explore needs {' and '.join(missing)}; install them with "
            "pip install 'filterscope[explore]'"
        )


def build_explorer(
    image: str | None,
    models: list[str] | None,
    *,
    clean: str | None,
    sigma_255: float | None,
    seed: int,
    device: str | None = None,
):
    """Read the image, load the models, return an :class:`~filterscope.explore.Explorer`
    whose networks run on ``device``."""
    from ..explore import Explorer, load_model
    from ..io import read_image, to_tensor
    from ..models.zoo import default_model_name

    if clean is not None and image is not None:
        raise InputError("give IMAGE (a noisy photo) or --clean CLEAN --sigma S, not both")
    if clean is None and image is None:
        raise InputError("give IMAGE, or --clean CLEAN with --sigma S")
    if (clean is None) != (sigma_255 is None):
        raise InputError("--clean and --sigma go together")
    if sigma_255 is not None and not 0 <= sigma_255 <= 255:
        raise InputError(f"--sigma must be in [0, 255], got {sigma_255:g}")
    array, _ = read_image(clean if clean is not None else image)
    tensor = to_tensor(array)
    channels = tensor.shape[1]
    names = models or [default_model_name(channels)]
    loaded = [load_model(name, channels) for name in names]
    return Explorer(
        tensor,
        loaded,
        sigma=None if sigma_255 is None else sigma_255 / 255.0,
        seed=seed,
        device=device,
    )


def run(args: argparse.Namespace) -> int:
    _require_web_packages()
    import uvicorn

    from ..explore.server import create_app

    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must be in 0..65535, got {args.port}")
    if args.host not in LOCAL_HOSTS:
        print(
            f"filterscope: warning: serving on {args.host}: anyone who can reach this "
            "machine can use the page and its CPU; the default 127.0.0.1 keeps it local",
            file=sys.stderr,
        )
    explorer = build_explorer(
        args.image,
        args.model,
        clean=args.clean,
        sigma_255=args.sigma,
        seed=args.seed,
        device=args.device,
    )
    config = uvicorn.Config(
        create_app(explorer), host=args.host, port=args.port, log_level="warning"
    )
    server = uvicorn.Server(config)

    def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.05)
        port = args.port
        for s in getattr(server, "servers", []):
            for sock in s.sockets:
                port = sock.getsockname()[1]
        host = f"[{args.host}]" if ":" in args.host else args.host
        url = f"http://{host}:{port}/"
        print(f"filterscope explore: serving {url} (Ctrl-C stops)", flush=True)
        if not args.no_browser:
            webbrowser.open(url)

    threading.Thread(target=announce, daemon=True).start()
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    if not server.started:
        raise InputError(f"could not serve on {args.host}:{args.port} (port in use?)")
    return 0
