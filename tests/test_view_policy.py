"""The view policy (``SaccadeConfig.views``): first views and crop budget on hand-computed image
sizes (640, 4096 and 20000 px), the zoom it promises, and the detector using it."""
from __future__ import annotations

import numpy as np
import pytest
from engine_fixtures import one_thread  # noqa: F401
from test_saccade import RectangleFinder

from cornernet_saccade.engine.analyze import looked_at
from cornernet_saccade.errors import ConfigError
from cornernet_saccade.inference.detector import SaccadeDetector
from cornernet_saccade.inference.locations import initial_locations
from cornernet_saccade.inference.settings import SaccadeConfig
from cornernet_saccade.inference.view_policy import MAX_AUTO_CROPS, ViewPlan, crop_budget, grid_zoom, view_plan

AUTO = SaccadeConfig(views="auto")  # official settings otherwise: init_sizes (192, 255), 30 crops, 16 px


@pytest.mark.parametrize(("height", "width", "plan", "grid_views"), [
    # zoom 16 / (4 * 16) = 0.25: 640 px -> a 160 px grid, below the 255 px whole view: no grid;
    # budget ceil(30 * 307200 / 2048**2) = 3 -> at least 30
    (480, 640, ViewPlan((192, 255), 30), 0),
    # 4096 * 0.25 = 1024: 255 px views of 255 / 0.25 = 1020 image px; 1 + ceil(3076 / 1020) = 5
    # columns, 1 + ceil(2052 / 1020) = 4 rows; budget 30 * 4096 * 3072 / 2048**2 = 90
    (3072, 4096, ViewPlan((192, 255, 1024), 90), 20),
    # 20000 * 0.25 = 5000: 1 + ceil(18980 / 1020) = 20 views a side; budget ceil(2861.02) = 2862,
    # capped at 2000
    (20000, 20000, ViewPlan((192, 255, 5000), 2000), 400),
])
def test_auto_views_on_hand_computed_sizes(height, width, plan, grid_views):
    assert view_plan(height, width, AUTO) == plan
    assert len(initial_locations(height, width, plan.init_sizes)) == len(plan.init_sizes[:2]) + grid_views


def test_smaller_objects_give_a_finer_grid():
    # min_object_size 10: zoom 0.4, 4096 * 0.4 = 1638.4 -> 1639; windows of int(255 / 0.40015) = 637
    # -> 636 image px (even); 1 + ceil(3460 / 636) = 7 columns, 1 + ceil(2436 / 636) = 5 rows
    plan = view_plan(3072, 4096, SaccadeConfig(views="auto", min_object_size=10))
    assert plan.init_sizes == (192, 255, 1639)
    assert len(initial_locations(3072, 4096, plan.init_sizes)) == 2 + 35
    # below 4 px the grid stops at native resolution: 255 px views of 254 image px
    plan = view_plan(480, 640, SaccadeConfig(views="auto", min_object_size=2))
    assert plan.init_sizes == (192, 255, 640)
    assert len(initial_locations(480, 640, plan.init_sizes)) == 2 + 3 * 2


@pytest.mark.parametrize("min_object_size", [4.0, 7.5, 16.0, 33.0, 100.0])
@pytest.mark.parametrize("long_side", [640, 3000, 9999])
def test_the_grid_zoom_makes_the_smallest_object_trained_size_after_the_fine_zoom(min_object_size, long_side):
    plan = view_plan(long_side, long_side, SaccadeConfig(views="auto", min_object_size=min_object_size))
    zoom = max(plan.init_sizes) / long_side  # the most zoomed first view
    assert min_object_size * zoom * 4 >= 16 - 1e-9  # the fine map's x4 zoom brings it to 16 crop px
    assert zoom <= 1.0 or max(plan.init_sizes) == 255  # never enlarged (a tiny image's 255 view aside)


def test_fixed_views_are_the_settings_and_auto_only_adds_to_them():
    fixed = SaccadeConfig(init_sizes=(255, 511), att_max_crops=7)
    assert view_plan(20000, 20000, fixed) == ViewPlan((255, 511), 7)
    auto = SaccadeConfig(views="auto", init_sizes=(255, 511), att_max_crops=7)
    assert view_plan(3072, 4096, auto) == ViewPlan((255, 511, 1024), 21)  # 7 * 3
    assert view_plan(1000, 1000, auto) == ViewPlan((255, 511), 7)  # the 511 grid zooms 0.511 > 0.25
    assert view_plan(3072, 4096, SaccadeConfig(views="auto", init_sizes=(1100,))).init_sizes == (1100,)


def test_crop_budget_follows_the_area_within_its_bounds():
    assert crop_budget(2048, 2048, 30) == 30
    assert crop_budget(2048, 4096, 30) == 60
    assert crop_budget(2049, 4096, 30) == 61  # rounded up
    assert crop_budget(100000, 100000, 30) == MAX_AUTO_CROPS
    assert crop_budget(100, 100, 3000) == 3000  # a larger att_max_crops is kept
    assert grid_zoom(16, 4) == 0.25 and grid_zoom(16, 0.5) == 1.0 and grid_zoom(64, 1) == 0.25


def test_bad_policy_settings_are_refused():
    with pytest.raises(ConfigError, match="views"):
        SaccadeDetector(RectangleFinder(), views="sometimes")
    with pytest.raises(ConfigError, match="min_object_size"):
        SaccadeDetector(RectangleFinder(), min_object_size=0)


@pytest.mark.usefixtures("one_thread")
def test_the_detector_looks_where_the_policy_says():
    image = np.zeros((3072, 4096, 3), np.uint8)
    image[1000:1012, 2000:2010, 0] = 255  # a 12 px red object
    finder = RectangleFinder(attend_everywhere=True)  # proposes everywhere: the budget decides
    for views, first_views, crops in (("fixed", 2, 30), ("auto", 22, 90)):
        detections = SaccadeDetector(finder, views=views, ref_dets=False)(image)
        rounds = np.array([view.round for view in detections.trace.crops])
        assert ((rounds == 0).sum(), (rounds > 0).sum()) == (first_views, crops)
        # what analyze reports for the image: every view is a 255 px network input
        assert looked_at(detections) == (first_views, crops, (first_views + crops) * 255 * 255)
