"""The audit log's latest rows in the sidebar, for an administrator of every collection."""

from __future__ import annotations

import streamlit as st

from page.common import Here, escape_markdown
from pipelines.errors import RagError
from pipelines.service import words

# the rows shown, newest first; the whole log is `python -m pipelines audit`
AUDIT_ROWS = 200


def audit_panel(here: Here) -> None:
    """「監査ログ」: the latest rows, newest first; not drawn for a caller who may not read it."""
    if not here.service.reads_audit(here.caller):
        return
    with st.expander("監査ログ"):
        try:
            entries = here.service.audit(here.caller, limit=AUDIT_ROWS)
        except RagError as error:
            st.warning(escape_markdown(str(error)))
            return
        if not entries:
            st.caption(words.NO_AUDIT_ENTRIES)
            return
        rows = [dict(zip(words.AUDIT_COLUMNS, words.audit_fields(entry), strict=True)) for entry in reversed(entries)]
        st.dataframe(rows, hide_index=True)
        st.caption(f"新しい順に {len(rows)} 件。すべては `python -m pipelines audit` で読めます。")
