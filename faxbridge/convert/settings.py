"""How documents are converted: paper, colour, image grouping, and which FAX.de types go as they are."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final


class Paper(enum.StrEnum):
    A4 = "a4"
    LETTER = "letter"


class ColourMode(enum.StrEnum):
    COLOR = "color"  # as it is; the fax machine greys it
    GREY = "grey"
    BW = "bw"  # black and white (a threshold): what a fax transmits anyway, and the smallest files


class ImageGrouping(enum.StrEnum):
    COMBINE = "combine"  # every image of a mail or unit on the pages of one PDF, in attachment order
    SEPARATE = "separate"  # one PDF per image


# FAX.de types that may also be converted instead of sent as they are (PDF and HTML always go as
# they are). TIFF and BMP become PDFs fitted to the page; DOC and XLS need LibreOffice.
CONVERTIBLE_AS_IS: Final = frozenset({"tiff", "bmp", "doc", "xls"})


@dataclass(frozen=True)
class ConvertSettings:
    """The ``convert`` section of the config (and a hotfolder's own ``convert`` override)."""

    paper: Paper = Paper.A4
    colour: ColourMode = ColourMode.COLOR
    images: ImageGrouping = ImageGrouping.COMBINE
    office: bool = True  # LibreOffice converts .docx, .odt … when it is installed
    office_timeout: float = 120.0  # a conversion that takes longer is killed
    as_is: frozenset[str] = field(default_factory=lambda: CONVERTIBLE_AS_IS)
    # Not a config key: <state_dir>/convert, where LibreOffice keeps its profiles between
    # conversions and restarts (a fresh profile costs seconds); None: a temporary folder.
    work_dir: Path | None = field(default=None, compare=False, metadata={"derived": True})
