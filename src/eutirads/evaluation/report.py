"""The evaluation report, built once as a list of blocks and rendered to Markdown (plots as
files beside it) and to self-contained HTML (plots embedded as base64 PNG)."""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

__all__ = ["Heading", "Paragraph", "Table", "Figure", "build_report", "to_markdown", "to_html",
           "fmt"]


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True)
class Figure:
    file: str       # name beside report.md
    caption: str
    png: bytes


Block = Heading | Paragraph | Table | Figure

METRIC_NAMES = {
    "accuracy": "Accuracy", "macro_f1": "Macro-F1", "weighted_f1": "Weighted F1",
    "kappa": "Quadratic-weighted kappa", "macro_auc": "Macro AUC (one-vs-rest)",
    "high_risk_sensitivity": "High-risk sensitivity",
    "high_risk_specificity": "High-risk specificity", "high_risk_auc": "High-risk AUC",
}


def fmt(value: Any, digits: int = 3) -> str:
    """Numbers for people: NaN (undefined) shows as 'n/a'."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def build_report(metrics: Mapping[str, Any], figures: Sequence[Figure]) -> list[Block]:
    """The report's content from `evaluate_run`'s metrics dict."""
    run = metrics["run"]
    labels = metrics["labels"]
    blocks: list[Block] = [
        Heading(f"Evaluation of {run['name']} on split '{metrics['split']}'", 1),
        Paragraph(f"Model `{run['model_name']}` (mode {run.get('mode') or 'n/a'}, best epoch "
                  f"{run.get('epoch', 'n/a')}), dataset `{metrics['dataset_name']}`: "
                  f"{metrics['n']} images of {metrics['n_patients']} patients"
                  + (", mirror test-time augmentation" if metrics.get("tta") else "")
                  + f". Evaluated {metrics['created']} with eutirads {metrics['eutirads_version']}."),
    ]
    if metrics.get("skipped"):
        blocks.append(Paragraph(f"**{len(metrics['skipped'])} image(s) could not be read and "
                                "were left out:** " + "; ".join(metrics["skipped"])))
    if metrics["absent_labels"]:
        blocks.append(Paragraph(
            f"Class(es) {', '.join(metrics['absent_labels'])} have no image in this split: "
            "their recall, sensitivity and AUC are undefined (n/a) and are left out of the "
            "macro averages; precision is n/a for a class never predicted."))

    summary, ci = metrics["summary"], (metrics.get("bootstrap") or {}).get("ci", {})
    boot = metrics.get("bootstrap")
    blocks += [Heading("Summary"), Table(
        ["Metric", "Value", "95% CI"],
        [[METRIC_NAMES.get(k, k), fmt(v),
          (f"{fmt(ci[k]['low'])} - {fmt(ci[k]['high'])}" if k in ci else "")]
         for k, v in summary.items()] + [["Log loss", fmt(metrics["log_loss"]), ""],
                                         ["Expected calibration error",
                                          fmt(metrics["calibration"]["ece"]), ""]])]
    if boot:
        blocks.append(Paragraph(f"Confidence intervals: percentile bootstrap, {boot['n_boot']} "
                                f"resamples of patients (all images of a drawn patient together), "
                                f"seed {boot['seed']}."))

    report = metrics["report"]
    rows = [[lab, fmt(report["per_class"][lab]["precision"], 2),
             fmt(report["per_class"][lab]["recall"], 2), fmt(report["per_class"][lab]["f1"], 2),
             str(report["per_class"][lab]["support"])] for lab in labels]
    rows.append(["accuracy", "", "", fmt(report["accuracy"], 2), str(report["macro"]["support"])])
    for avg in ("macro", "weighted"):
        rows.append([f"{avg} avg", fmt(report[avg]["precision"], 2),
                     fmt(report[avg]["recall"], 2), fmt(report[avg]["f1"], 2),
                     str(report[avg]["support"])])
    blocks += [Heading("Per class"), Table(["class", "precision", "recall", "f1-score",
                                            "support"], rows)]

    sens = metrics["sensitivity_specificity"]
    blocks.append(Table(["class", "sensitivity", "specificity", "AUC (one-vs-rest)"],
                        [[lab, fmt(sens[lab]["sensitivity"]), fmt(sens[lab]["specificity"]),
                          fmt(metrics["roc"]["per_class"][lab])] for lab in labels]))

    cm = metrics["confusion_matrix"]
    blocks += [Heading("Confusion matrix"),
               Paragraph("Rows: true class; columns: predicted class."),
               Table(["true \\ predicted", *labels],
                     [[lab, *map(str, row)] for lab, row in zip(labels, cm)])]

    hr = metrics.get("high_risk")
    blocks.append(Heading("High-risk view"))
    if hr:
        blocks += [
            Paragraph(f"Positive: {', '.join(hr['positive'])} ({hr['n_positive']} images); "
                      f"negative: {', '.join(hr['negative'])} ({hr['n_negative']} images). "
                      "Called positive when the predicted class is positive; the AUC scores "
                      "the summed probability of the positive classes."),
            Table(["sensitivity", "specificity", "PPV", "NPV", "AUC", "TP", "FN", "FP", "TN"],
                  [[fmt(hr["sensitivity"]), fmt(hr["specificity"]), fmt(hr["ppv"]),
                    fmt(hr["npv"]), fmt(hr["auc"]), str(hr["tp"]), str(hr["fn"]), str(hr["fp"]),
                    str(hr["tn"])]])]
    else:
        blocks.append(Paragraph("Not computed: no positive set applies to these classes "
                                "(pass --positive)."))

    cal = metrics["calibration"]
    raw = metrics.get("calibration_uncalibrated")
    temperature = metrics.get("temperature")
    scaled = (f" Probabilities are temperature-scaled (T = {fmt(temperature)}, fitted on the "
              f"val split) as the bundle serves them; expected calibration error "
              f"{fmt(raw['ece'])} before scaling, {fmt(cal['ece'])} after."
              if raw is not None and temperature is not None else "")
    blocks += [Heading("Calibration"),
               Paragraph(f"Expected calibration error {fmt(cal['ece'])} over {cal['n_bins']} "
                         "equal-width bins of the predicted class's probability." + scaled),
               Table(["confidence bin", "images", "mean confidence", "accuracy"],
                     [[f"{b['lower']:.1f}-{b['upper']:.1f}", str(b["count"]),
                       fmt(b["confidence"]), fmt(b["accuracy"])]
                      for b in cal["bins"] if b["count"]])]
    descriptors = metrics.get("descriptors") or {}
    if descriptors:
        blocks += [Heading("Descriptor heads"),
                   Paragraph("Accuracy of each descriptor head on the images of this split "
                             "where the descriptor is recorded."),
                   Table(["descriptor", "accuracy", "images"],
                         [[name, fmt(d["accuracy"]), str(d["n"])]
                          for name, d in descriptors.items()])]
    blocks.append(Heading("Plots"))
    blocks.extend(figures)
    return blocks


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def to_markdown(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            out += [block.text, ""]
        elif isinstance(block, Table):
            out.append("| " + " | ".join(map(_md_cell, block.header)) + " |")
            out.append("|" + "---|" * len(block.header))
            out += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in block.rows]
            out.append("")
        elif isinstance(block, Figure):
            out += [f"![{block.caption}]({block.file})", ""]
    return "\n".join(out)


def _inline(text: str) -> str:
    """Escape, then the two Markdown marks the report uses: **bold** and `code`."""
    parts = html.escape(text).split("**")
    text = "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))
    parts = text.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


_STYLE = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
color:#1a1a1a}table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #bbb;
padding:.25rem .6rem;text-align:right}td:first-child,th:first-child{text-align:left}
th{background:#eef2f7}figure{display:inline-block;margin:.5rem 1rem .5rem 0}
figcaption{font-size:.85rem;color:#555}img{max-width:100%}code{background:#f3f3f3}"""


def to_html(blocks: Sequence[Block]) -> str:
    title = next((b.text for b in blocks if isinstance(b, Heading)), "Evaluation")
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"]
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            out.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row)
                           + "</tr>" for row in block.rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(block, Figure):
            data = base64.b64encode(block.png).decode("ascii")
            out.append(f'<figure><img alt="{html.escape(block.caption)}" '
                       f'src="data:image/png;base64,{data}"><figcaption>'
                       f"{html.escape(block.caption)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)
