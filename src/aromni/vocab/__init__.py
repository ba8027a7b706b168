"""Token space: the vocabulary layout and the interleaved sequence format."""

from aromni.vocab.conversation import (
    OFFICIAL,
    PAPER,
    Conversation,
    EncodedConversation,
    ImageSegment,
    PromptStyle,
    Span,
    SpeechSegment,
    TextSegment,
    Turn,
    decode_conversation,
    encode_conversation,
)
from aromni.vocab.layout import CodeRange, VocabLayout
from aromni.vocab.segmenter import SplitResult, split_segments
from aromni.vocab.tasks import TASKS, Task, get_task
from aromni.vocab.templates import official_chat_turn, task_conversation

__all__ = [
    "OFFICIAL", "PAPER", "CodeRange", "Conversation", "EncodedConversation", "ImageSegment", "PromptStyle", "Span",
    "SpeechSegment", "SplitResult", "TASKS", "Task", "TextSegment", "Turn", "VocabLayout", "decode_conversation", "get_task",
    "encode_conversation", "official_chat_turn", "split_segments", "task_conversation",
]
