"""One palette for the token classes, shared by every figure, the report and the player."""
from __future__ import annotations

# Colour-blind-safe (Okabe-Ito): live blue, dead vermilion, phantom bluish green, unknown grey.
CLASS_COLOURS: dict[str, str] = {"live": "#0072B2", "dead": "#D55E00", "phantom": "#009E73", "unknown": "#999999"}
CLASS_ORDER: tuple[str, ...] = ("live", "dead", "phantom", "unknown")


def class_colour(name: str) -> str:
    """The colour of token class ``name`` (grey for a class the palette does not know)."""
    return CLASS_COLOURS.get(str(name), CLASS_COLOURS["unknown"])
