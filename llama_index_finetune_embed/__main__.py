"""``python -m llama_index_finetune_embed`` runs the ``finetune-embed`` CLI."""

import sys

from llama_index_finetune_embed.cli import main

sys.exit(main())
