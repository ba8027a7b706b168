"""``POST /v1/images/generations``: text to image, ``n`` images (1..4) as base64 PNG.

The ``n`` images are ``n`` requests to the batching engine, run at once (each CFG image takes three batch rows);
image ``i`` uses ``seed + i`` when a seed is given. ``guidance_scale`` is the text scale of classifier-free
guidance (the model's default otherwise). Only ``response_format: "b64_json"`` is served (no URLs: the server
stores nothing), and ``size`` may only name the model's own size.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends, Request

from aromni.errors import InputError
from aromni.serve.api_errors import APIError
from aromni.serve.image_codec import png_b64
from aromni.serve.schemas import ErrorResponse, ImageGenerationRequest, ImagesResponse
from aromni.serve.state import ServeState, require_api_key, serve_state

router = APIRouter(dependencies=[Depends(require_api_key)])
ERRORS = {s: {"model": ErrorResponse} for s in (400, 401, 413, 429, 504)}


def model_size(state: ServeState) -> str:
    side = state.model.image.image_size if state.model.image is not None else 0
    return f"{side}x{side}"


@router.post("/v1/images/generations", response_model=ImagesResponse, responses=ERRORS)
async def generations(body: ImageGenerationRequest, request: Request,
                      state: ServeState = Depends(serve_state)) -> ImagesResponse:
    if state.model.image is None:
        raise APIError(400, "this model has no image tokenizer: it cannot draw", "serve a bundle with images")
    if body.size is not None and body.size != model_size(state):
        raise APIError(400, f"size {body.size!r} is not available: this model draws {model_size(state)} images",
                       f"send size {model_size(state)!r} or leave it out", param="size", code="unsupported_value")
    state.model.check_text(body.prompt, "prompt")
    job = await state.start_job(request)

    def draw(i: int) -> str:
        seed = None if body.seed is None else body.seed + i
        out = state.model.t2i(body.prompt, seed=seed, guidance_scale_text=body.guidance_scale)
        if not out.complete:
            raise InputError("the image was cut short before all its codes were drawn",
                             "the prompt leaves too little room in the context: shorten it")
        return png_b64(out.image)

    def work(i: int) -> Callable[[], Awaitable[str]]:
        return lambda: job.in_thread(job.scoped(lambda: draw(i)))

    try:
        images = await job.gather([work(i) for i in range(body.n)])
    finally:
        job.finish()
    return ImagesResponse(created=int(time.time()), data=[{"b64_json": b} for b in images])
