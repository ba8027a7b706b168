"""``POST /v1/vivo``: OmniVIVO, one caption -> an image and its spoken narration (when the server has a pipeline).

The pipeline's model runs one stream at a time (its caches are its own), so calls are serialised by
``state.vivo_lock``; a cancelled request (client gone, timeout) leaves its stream at the next event, which ends
the run.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from aromni.omnivivo.api import VivoPipeline, check_prompts
from aromni.serve.api_errors import APIError
from aromni.serve.audio_codec import b64, wav_bytes
from aromni.serve.image_codec import png_b64
from aromni.serve.runner import Job
from aromni.serve.schemas import ErrorResponse, VivoRequest, VivoResponse
from aromni.serve.state import ServeState, require_api_key, serve_state

router = APIRouter(dependencies=[Depends(require_api_key)])
ERRORS = {s: {"model": ErrorResponse} for s in (400, 401, 404, 413, 429, 504)}


@router.post("/v1/vivo", response_model=VivoResponse, responses=ERRORS)
async def vivo(body: VivoRequest, request: Request, state: ServeState = Depends(serve_state)) -> VivoResponse:
    pipe = state.vivo
    if pipe is None:
        raise APIError(404, "this server has no OmniVIVO pipeline",
                       "start it with `aromni serve --vivo EXPORT --vq VQDIR`", code="vivo_not_loaded")
    check_prompts(body.prompt)
    job = await state.start_job(request)
    try:
        return await job.call(lambda: _generate(state, pipe, body, job))
    finally:
        job.finish()


def _generate(state: ServeState, pipe: VivoPipeline, body: VivoRequest, job: Job) -> VivoResponse:
    """Worker side: one run under the lock, left early when the job is cancelled; the encoded answer."""
    with state.vivo_lock:
        stream = pipe.generate(body.prompt, seed=body.seed, stream=True)
        for _ in stream:
            if job.cancel.is_set():
                break
        if job.cancel.is_set():
            raise job.timeout_error() if job.timed_out else APIError(499, "the request was cancelled")
        result = stream.results[0]
    return VivoResponse(image=png_b64(result.image) if result.image is not None else None,
                        audio=b64(wav_bytes(result.audio, result.sample_rate)), sample_rate=result.sample_rate,
                        timings=result.timings.to_dict())
