"""Serve a model folder as the LLM Teacher: vLLM's OpenAI-compatible server, with CPU settings where no GPU is visible.

    python scripts/serve_teacher.py --model /work/models/smollm2-135m-instruct
    python scripts/serve_teacher.py --model DIR --port 8001 --max-model-len 4096 --name teacher -- --seed 0

It prints the TEACHER_BASE_URL and TEACHER_MODEL_NAME to set, then becomes the server (Ctrl+C stops it).
Arguments after `--` go to vLLM unchanged. The server answers once the model is loaded: a 135 M model took
about 136 s on a 2-core machine (`curl URL/models` tells).
"""

from __future__ import annotations

import argparse
import os
import sys

from prosetting.teacher_model.serve import base_url, served_name, server_command


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    ours, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model",
        required=True,
        help="Hugging Face model folder (with config.json and a tokenizer), or fetched:NAME (scripts/fetch_model.py).",
    )
    p.add_argument("--port", type=int, default=8000, help="Port to listen on (default 8000).")
    p.add_argument("--host", default="127.0.0.1", help="Address to listen on (0.0.0.0: every interface).")
    p.add_argument("--max-model-len", type=int, default=2048, help="Context length served (prompt plus answer).")
    p.add_argument("--name", default="", help="Served model name, TEACHER_MODEL_NAME (default: the folder's name).")
    args = p.parse_args(ours)
    try:
        command, env = server_command(
            args.model,
            port=args.port,
            host=args.host,
            max_model_len=args.max_model_len,
            name=args.name or None,
            extra=extra,
        )
    except FileNotFoundError as exc:
        p.error(str(exc))
    print(f"TEACHER_BASE_URL={base_url(args.host, args.port)}")
    print(f"TEACHER_MODEL_NAME={args.name or served_name(command[command.index('--model') + 1])}")
    print("starting: " + " ".join(command), flush=True)
    os.execvpe(command[0], command, env)


if __name__ == "__main__":
    main()
