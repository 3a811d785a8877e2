"""A small always-on-top status window for the counter PC (Tk, part of Python's stdlib).

Shown when a desktop exists; `run --headless` or no display falls back to the console.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any


def desktop_available() -> bool:
    if sys.platform == "win32":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def status_text(runtime: Any) -> str:
    state = runtime.state
    stats = runtime.outbox.stats()
    portal = "已连接" if state.portal_reachable else "未连接"
    lines = [f"门户：{portal}", f"扫描仪：{state.scanner_state}",
             f"待上传：{stats.get('pending', 0)} 页    上传失败：{stats.get('failed', 0)} 页"]
    if state.current_job:
        lines.append(f"当前任务：已扫描 {state.pages_scanned} 页")
    if state.last_error:
        lines.append(f"最近错误：{state.last_error[:60]}")
    return "\n".join(lines)


def run_status_window(runtime: Any, stop: threading.Event) -> bool:
    """Run the window until closed or `stop`; False when no desktop/Tk is available."""
    if not desktop_available():
        return False
    try:
        import tkinter as tk
    except ImportError:
        return False
    try:
        root = tk.Tk()
    except tk.TclError:
        return False
    root.title("档案影像扫描终端")
    root.attributes("-topmost", True)
    label = tk.Label(root, justify="left", font=("WenQuanYi Micro Hei", 11), padx=12, pady=10)
    label.pack()

    def refresh() -> None:
        if stop.is_set():
            root.destroy()
            return
        label.configure(text=status_text(runtime))
        root.after(1000, refresh)

    root.protocol("WM_DELETE_WINDOW", root.iconify)  # closing hides; the agent keeps running
    refresh()
    root.mainloop()
    return True
