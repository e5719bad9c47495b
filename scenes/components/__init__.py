"""The building blocks every scene draws with, defined once (`from scenes import components as c`).

- `style`: the colour language, one colour per role (query, key, value, latent, cache,
  highlight), and the type scale: title, body, label and caption sizes in one serif font;
- `layout`: the title, content and caption zones (no magic coordinates);
- `numbers`: thousands separators, bytes, ratios, probabilities;
- `charts`: a horizontal bar chart;
- `heatmaps`: fixed colour scales, heatmaps drawn as one image, colour bars;
- `tokens`: a token strip and a block for big matrices;
- `base`: `VideoScene`, which reads the parameters and the scene's data and records what it shows.

Scenes take their data from `mla_core` and their look from here; nothing here computes model
maths.
"""

from scenes.components.base import (  # noqa: F401
    REPO,
    VideoScene,
    project_files_loaded,
    write_scene_record,
)
from scenes.components.charts import (  # noqa: F401
    HBarChart,
)
from scenes.components.heatmaps import (  # noqa: F401
    PATTERN_SCALE,
    ColorBar,
    ColorScale,
    Heatmap,
    _hex_to_rgb,
    diverging_scale,
)
from scenes.components.layout import (  # noqa: F401
    CAPTION_ZONE,
    CONTENT_ZONE,
    FRAME_HEIGHT,
    FRAME_WIDTH,
    MARGIN,
    MIN_CAPTION_SCALE,
    TITLE_ZONE,
    Zone,
    caption,
    fit_in,
    title,
)
from scenes.components.numbers import (  # noqa: F401
    MINUS,
    TIMES,
    fmt_bytes,
    fmt_float,
    fmt_int,
    fmt_percent,
    fmt_ratio,
    say_ratio,
    say_sci,
    say_token,
)
from scenes.components.plots import (  # noqa: F401
    LogLogPlot,
)
from scenes.components.style import (  # noqa: F401
    BACKGROUND,
    BODY_SIZE,
    CACHE,
    CAPTION_SIZE,
    FONT,
    GRID,
    HIGHLIGHT,
    KEY,
    LABEL_SIZE,
    LATENT,
    MATH_SCALE,
    MUTED,
    QUERY,
    TEXT_COLOR,
    TITLE_SIZE,
    VALUE,
    math_tex,
    text,
)
from scenes.components.tokens import (  # noqa: F401
    MatrixBlock,
    TokenStrip,
)

# isort: split
from scenes.components.equations import (  # noqa: F401
    colored_math,
    sci_parts,
    sci_tex,
    sci_text,
)
from scenes.components.matrices import (  # noqa: F401
    MatrixHeatmap,
    shape_text,
    shown_part,
    vector_strip,
)
from scenes.components.xy_plot import (  # noqa: F401
    XYPlot,
    nice_ticks,
)
