// The projects page: every project the key can see, each linking to its logs.

import { listProjects } from "./api.js";
import { h, replace } from "./dom.js";

export function projectsPage(main, ctx) {
  const controller = new AbortController();
  ctx.setCrumbs([["Projects", null]]);
  const list = h("ul", { class: "projects", "aria-busy": "true" });
  replace(main, h("section", { class: "page" },
    h("h1", {}, "Projects"), list));

  async function load() {
    try {
      const projects = await listProjects(controller.signal);
      list.removeAttribute("aria-busy");
      if (projects.length === 0) {
        replace(list, h("li", { class: "empty" },
          h("p", {}, "No projects yet. Log something with the SDK and it appears here:"),
          h("pre", { class: "snippet" },
            "import spanlog\n\nlogger = spanlog.init_logger(project=\"my-app\")\n\n"
            + "@spanlog.traced\ndef answer(question):\n    return \"42\"\n\nanswer(\"why?\")\n"
            + "spanlog.flush()")));
        return;
      }
      projects.sort((a, b) => String(a.name).localeCompare(String(b.name)));
      replace(list, projects.map((p) => {
        ctx.rememberProjectName(p.id, p.name);
        const created = p.created ? new Date(p.created) : null;
        return h("li", {},
          h("a", { href: `/projects/${encodeURIComponent(p.id)}`, "data-nav": true, class: "project-link" },
            h("span", { class: "project-name" }, p.name || p.id),
            created && !Number.isNaN(created.getTime())
              ? h("span", { class: "muted" }, `created ${created.toLocaleDateString()}`) : null));
      }));
      const first = list.querySelector("a");
      if (first && document.activeElement === document.body) first.focus();
    } catch (err) {
      list.removeAttribute("aria-busy");
      replace(list, h("li", { class: "empty" }, "Could not load projects."));
      ctx.showError(err);
    }
  }

  load();
  return {
    destroy() { controller.abort(); },
    onLive() {},
  };
}
