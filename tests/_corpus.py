"""A tiny markdown corpus for end-to-end tests of the CLI and the examples."""

from __future__ import annotations

from pathlib import Path

TOPICS = {
    "riders": "Riders request trips in the app and are matched with nearby drivers",
    "drivers": "Drivers choose when to work and are paid per trip with tips on top",
    "insurance": "Insurance covers auto liability while a driver is on a trip",
    "bikes": "Bikes and scooters serve short trips in dense city centres",
    "pricing": "Prices rise with demand so that more drivers come online at busy hours",
    "safety": "Safety features include trip sharing, background checks and an emergency button",
}


def write_docs(folder: Path, topics: dict[str, str] = TOPICS, *, notes: int = 6) -> Path:
    """One markdown file per topic, its sentence repeated ``notes`` times with small variations."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, sentence in topics.items():
        body = " ".join(f"{sentence} (note {i} on {name})." for i in range(notes))
        (folder / f"{name}.md").write_text(f"# {name.title()}\n\n{body}\n")
    return folder
