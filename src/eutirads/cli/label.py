"""`eutirads label import|export`: move datasets in and out of the labeling web app."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("label", help="labeling projects: import a dataset, export labels")
    sub = parser.add_subparsers(dest="label_command", metavar="ACTION", required=True)

    imp = sub.add_parser("import", help="load a dataset into a labeling project",
                         description="Load a dataset's manifest into a labeling project "
                                     "(images are read in place, not copied). Re-importing "
                                     "adds only new images.")
    imp.add_argument("dataset", help="dataset folder (with manifest.csv) or the CSV itself")
    imp.add_argument("--project", required=True, help="project name (letters, digits, - or _)")
    imp.add_argument("--readers", type=int, default=2, help="readers per image (default 2)")
    imp.add_argument("--mode", choices=("descriptors", "category"), default="descriptors",
                     help="readers set the five descriptors and the rule gives the category "
                          "(descriptors, default), or they pick the category only")
    imp.add_argument("--queue-order", choices=("random", "manifest", "uncertain-first"),
                     default="random",
                     help="the order readers get a new project's images: a fixed shuffle "
                          "(random, default), the manifest's, or the model's least certain "
                          "first (see 'label rank')")
    labels = imp.add_mutually_exclusive_group()
    labels.add_argument("--keep-labels", metavar="READER",
                        help="keep the manifest's labels as this reader's readings")
    labels.add_argument("--ignore-labels", action="store_true",
                        help="ignore the manifest's labels (the default)")
    imp.set_defaults(func=_import)

    exp = sub.add_parser("export", help="write a project's labels as a dataset",
                         description="Write manifest.csv and the images into OUT, ready for "
                                     "'eutirads train'; per-reader labels go to reader_<name> "
                                     "columns.")
    exp.add_argument("project")
    exp.add_argument("--out", required=True, help="output dataset folder")
    exp.add_argument("--policy", default="consensus",
                     help="consensus (adjudicated or unanimous; default), majority, or reader:NAME")
    exp.add_argument("--keep-unlabelled", action="store_true",
                     help="also write images without a label under the policy")
    exp.set_defaults(func=_export)

    rank = sub.add_parser("rank", help="order a project's queue by the model's uncertainty",
                          description="Active learning: predict the project's unread images "
                                      "with a bundle (default: the diagnosis page's active "
                                      "model) and show readers the least certain first "
                                      "(the project's queue order becomes uncertain-first).")
    rank.add_argument("project")
    rank.add_argument("--bundle", help="bundle folder (default: the active model)")
    rank.set_defaults(func=_rank)

    lst = sub.add_parser("list", help="list labeling projects and their progress")
    lst.set_defaults(func=_list)


def _import(args: argparse.Namespace) -> int:
    from ..web import setup

    setup(migrate=True)
    from ..web.labeling.project_io import import_project

    report = import_project(args.dataset, args.project, readers=args.readers,
                            keep_labels_as=args.keep_labels, mode=args.mode,
                            queue_order=args.queue_order)
    for problem in report.problems:
        print(f"eutirads: warning: {problem}", file=sys.stderr)
    print(report.summary())
    return 0 if report.added or report.already else 2


def _export(args: argparse.Namespace) -> int:
    from ..web import setup

    setup(migrate=True)
    from ..web.labeling.project_io import export_project

    report = export_project(args.project, args.out, policy=args.policy,
                            keep_unlabelled=args.keep_unlabelled)
    for problem in report.problems:
        print(f"eutirads: warning: {problem}", file=sys.stderr)
    print(report.summary())
    return 0


def _rank(args: argparse.Namespace) -> int:
    from ..web import setup

    setup(migrate=True)
    from ..errors import InputError
    from ..web.labeling.models import Project
    from ..web.labeling.ranking import rank_project

    project = Project.objects.filter(name=args.project).first()
    if project is None:
        raise InputError(f"no labeling project named {args.project!r}")
    if args.bundle:
        from ..inference import Predictor

        predictor = Predictor(args.bundle)
    else:
        from ..web.diagnosis.services import active_bundle, get_predictor

        predictor = get_predictor(active_bundle())
    ranked, problems = rank_project(project, predictor)
    for problem in problems:
        print(f"eutirads: warning: {problem}", file=sys.stderr)
    print(f"project {project.name}: {ranked} images ranked; readers now see the least "
          f"certain first")
    return 0


def _list(args: argparse.Namespace) -> int:
    from ..web import setup

    setup(migrate=True)
    from django.db.models import Count, Q

    from ..web.labeling.models import Project

    for p in Project.objects.all():
        complete = (p.images.annotate(saved=Count("readings", filter=Q(readings__done=True)))
                    .filter(saved__gte=p.readers_required).count())
        print(f"{p.name}\t{p.images.count()} images\t{complete} complete "
              f"({p.readers_required} readers each)\t{p.dataset_root}")
    return 0
