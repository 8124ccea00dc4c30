"""Pascal VOC XML reader.

Layouts (``path`` is):

* a VOC folder with ``Annotations/*.xml`` and ``JPEGImages/``;
* a split file ``<VOC folder>/ImageSets/Main/<split>.txt`` (one id per line; only the first word
  is used) -> ``Annotations/<id>.xml`` of those ids;
* a folder of ``*.xml`` files with the images beside them (e.g. LabelImg output).

Images are ``image_root / <filename>`` (``<filename>`` from the XML); ``image_root`` defaults to
``JPEGImages/`` in the VOC layouts and to the XML's folder otherwise. Image ids are the XML files'
positions in sorted order (0-based). Size: ``<size><width>/<height>``, or the image header.

* Boxes: VOC ``xmin..xmax`` are 1-based inclusive pixel indices, so the continuous box is
  ``x1, y1, x2, y2 = xmin - 1, ymin - 1, xmax, ymax`` in image pixels.
* Classes: ``class_names`` if given, else every ``<name>`` found (also of difficult objects and
  of objects skipped for a bad box or image, so the labels stay stable), sorted.
* ``<difficult>1</difficult>`` objects are left out (counted in ``ignored_objects["difficult"]``)
  unless ``keep_difficult=True``: VOC evaluation ignores them, and the usual practice (e.g.
  Faster R-CNN's ``use_diff=False``) does not train on them.

Fatal (:class:`~cornernet_saccade.errors.AnnotationError`, naming the XML file): no annotation files
found, malformed XML, root element not ``<annotation>``, no ``<filename>``, an ``<object>`` without
``<name>``, ``<bndbox>`` or one of its four coordinates. Per-item issues are those of
:mod:`cornernet_saccade.data.builder` (location ``object N``, 1-based), plus ``duplicate id`` (two
XML files describe the same image: the later one is skipped) and ``missing annotation`` (an id of
the split file has no XML file).
"""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cornernet_saccade.data.builder import DatasetBuilder, PendingImage, parse_number
from cornernet_saccade.data.records import DetectionDataset
from cornernet_saccade.errors import AnnotationError
from cornernet_saccade.inputs import read_input_bytes, read_input_text

_COORDINATES = ("xmin", "ymin", "xmax", "ymax")


def read_voc(
    path: str | Path,
    *,
    image_root: str | Path | None = None,
    class_names: Sequence[str] | None = None,
    keep_difficult: bool = False,
) -> DetectionDataset:
    """Read Pascal VOC annotations into a :class:`DetectionDataset` (see the module docstring).

    Raises:
        AnnotationError: no annotations at ``path``, or a structurally malformed XML file.
    """
    path = Path(path)
    xml_files, default_root = _annotation_files(path)
    reader = _VocReader(
        DatasetBuilder(path), Path(image_root) if image_root is not None else default_root, keep_difficult
    )
    for image_id, xml_file in enumerate(xml_files):
        if xml_file.is_file():
            reader.read_xml(xml_file, image_id)
        else:
            reader.builder.report(
                path, f"id {xml_file.stem}", "missing annotation", f"annotation file {xml_file} not found"
            )
    names = list(class_names) if class_names is not None else sorted(reader.names_seen)
    return reader.builder.build({name: label for label, name in enumerate(names)}, names, "class name")


def _annotation_files(path: Path) -> tuple[list[Path], Path | None]:
    """The XML files to read and the default image folder (``None``: beside each XML)."""
    if path.is_file():
        voc_root = path.parent.parent.parent
        if not (voc_root / "Annotations").is_dir():
            raise AnnotationError(
                f"{path}: a VOC split file must be <VOC folder>/ImageSets/Main/<split>.txt "
                f"with <VOC folder>/Annotations/ beside ImageSets/"
            )
        ids = _split_ids(path)
        return [voc_root / "Annotations" / f"{image_id}.xml" for image_id in ids], voc_root / "JPEGImages"
    if not path.is_dir():
        raise AnnotationError(f"{path}: VOC annotation folder or split file not found")
    if (path / "Annotations").is_dir():
        files = sorted((path / "Annotations").glob("*.xml"))
        default_root: Path | None = path / "JPEGImages"
    else:
        files = sorted(path.glob("*.xml"))
        default_root = None
    if not files:
        raise AnnotationError(f"{path}: no VOC annotation (*.xml) files found")
    return files, default_root


def _split_ids(path: Path) -> list[str]:
    """The image ids of a VOC split file (first word of each non-blank line)."""
    lines = read_input_text(path, AnnotationError, "split file").splitlines()
    ids = [line.split()[0] for line in lines if line.strip()]
    if not ids:
        raise AnnotationError(f"{path}: split file lists no image ids")
    return ids


@dataclass
class _VocReader:
    """State while reading the XML files of one VOC dataset."""

    builder: DatasetBuilder
    image_root: Path | None  # None: images beside their XML file
    keep_difficult: bool
    names_seen: set[str] = field(default_factory=set)
    image_paths_seen: set[Path] = field(default_factory=set)

    def read_xml(self, xml_file: Path, image_id: int) -> None:
        """Register the image of one VOC XML file and its objects."""
        annotation = _parse(xml_file)
        file_name = _text(annotation, "filename")
        if not file_name:
            raise AnnotationError(f"{xml_file}: no <filename>")
        image_path = (self.image_root or xml_file.parent) / file_name
        if image_path in self.image_paths_seen:
            problem = f"image {image_path} is described by an earlier file too; skipped"
            self.builder.report(xml_file, "", "duplicate id", problem)
            return
        self.image_paths_seen.add(image_path)
        size = annotation.find("size")
        annotated_size = None if size is None else (_text(size, "width"), _text(size, "height"))
        image = self.builder.add_image(
            image_id, image_path, annotated_size, annotation_path=xml_file, location=""
        )
        for number, element in enumerate(annotation.findall("object"), start=1):
            self.read_object(element, f"object {number}", xml_file, image)

    def read_object(
        self, element: ElementTree.Element, location: str, xml_file: Path, image: PendingImage | None
    ) -> None:
        """Add one ``<object>``'s box (VOC 1-based inclusive -> continuous image pixels); only note
        its class name when the image is unusable (``None``)."""
        name = _text(element, "name")
        box = element.find("bndbox")
        if not name or box is None:
            raise AnnotationError(f"{xml_file}: {location} lacks <name> or <bndbox>")
        values = [_text(box, tag) for tag in _COORDINATES]
        if any(value is None for value in values):
            raise AnnotationError(
                f"{xml_file}: {location}: <bndbox> lacks one of {', '.join(_COORDINATES)}"
            )
        self.names_seen.add(name)
        if image is None:
            return
        if _is_difficult(element) and not self.keep_difficult:
            self.builder.ignore("difficult")
            return
        xmin, ymin, xmax, ymax = (parse_number(value) for value in values)
        x1 = xmin - 1.0 if xmin is not None else None
        y1 = ymin - 1.0 if ymin is not None else None
        self.builder.add_box(image, name, (x1, y1, xmax, ymax), annotation_path=xml_file, location=location)


def _parse(xml_file: Path) -> ElementTree.Element:
    """The ``<annotation>`` root element of an XML file."""
    try:
        root = ElementTree.fromstring(read_input_bytes(xml_file, AnnotationError, "XML file"))
    except ElementTree.ParseError as exc:
        line, column = exc.position
        raise AnnotationError(f"{xml_file}: malformed XML (line {line}, column {column}: {exc})") from exc
    except (OSError, RecursionError) as exc:
        raise AnnotationError(f"{xml_file}: cannot read the XML file ({type(exc).__name__}: {exc})") from exc
    if root.tag != "annotation":
        raise AnnotationError(f"{xml_file}: root element is <{root.tag}>, expected <annotation>")
    return root


def _is_difficult(element: ElementTree.Element) -> bool:
    """Whether an ``<object>`` is marked ``<difficult>1</difficult>`` (or ``true``)."""
    return (_text(element, "difficult") or "0").lower() not in ("0", "false")


def _text(element: ElementTree.Element, tag: str) -> str | None:
    """Stripped text of the child ``tag``; ``None`` when the child is absent or empty."""
    child = element.find(tag)
    if child is None or child.text is None or not child.text.strip():
        return None
    return child.text.strip()
