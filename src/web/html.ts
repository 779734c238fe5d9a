import type { Lang, Messages } from './i18n.js';

/** Escapes text for HTML element content and attribute values. */
export function esc(v: unknown): string {
  return String(v ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export interface PageContext {
  lang: Lang;
  t: Messages;
  user?: { name: string; id: string };
  csrf?: string;
}

/** The page frame: header with the user and logout, language switch, content. No inline script (CSP). */
export function page(ctx: PageContext, title: string, body: string, opts: { scripts?: string[]; modules?: string[]; head?: string; wide?: boolean } = {}): string {
  const { t, user, lang } = ctx;
  const other = lang === 'fr' ? 'en' : 'fr';
  return `<!doctype html>
<html lang="${lang}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)} · ${esc(t.appName)}</title><link rel="stylesheet" href="/app/static/app.css">${opts.head ?? ''}</head>
<body class="${opts.wide ? 'wide' : ''}">
<header><a class="brand" href="/app">OpenDRIM</a>
<nav>${user ? `<span class="user" id="current-user">${esc(t.connectedAs)} ${esc(user.name)}</span>
<form method="post" action="/auth/logout" class="inline"><input type="hidden" name="csrf" value="${esc(ctx.csrf)}"><button type="submit" id="logout">${esc(t.logout)}</button></form>` : ''}
<a class="lang" href="?lang=${other}">${other.toUpperCase()}</a></nav></header>
<main>${body}</main>
${(opts.scripts ?? []).map((s) => `<script src="${esc(s)}"></script>`).join('\n')}
${(opts.modules ?? []).map((s) => `<script type="module" src="${esc(s)}"></script>`).join('\n')}
</body></html>`;
}
