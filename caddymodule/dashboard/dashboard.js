// The webhook dashboard: polls the JSON endpoints served next to this page
// (api/…) and renders them with DOM calls only (every string from the server
// goes through textContent, never innerHTML).
'use strict';
(function () {
	const REFRESH_MS = 2000;
	const SVG = 'http://www.w3.org/2000/svg';

	function el(tag, attrs, ...kids) {
		const e = document.createElement(tag);
		for (const [k, v] of Object.entries(attrs || {})) {
			if (v === null || v === undefined || v === false) continue;
			if (k === 'class') e.className = v;
			else if (k === 'text') e.textContent = v;
			else e.setAttribute(k, v);
		}
		for (const kid of kids) {
			if (kid === null || kid === undefined) continue;
			e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
		}
		return e;
	}

	// The endpoints' base: the page's directory on its origin. Built from
	// location.origin, which never carries credentials: a relative URL would
	// resolve against a page URL such as https://ops:pw@host/ops/webhooks/,
	// and fetch refuses URLs with credentials (the browser still sends the
	// basic_auth it was given for the page).
	const BASE = location.origin + location.pathname.replace(/[^/]*$/, '') + 'api/';

	async function api(path, opts) {
		const init = Object.assign({ cache: 'no-store', credentials: 'same-origin', headers: { 'Accept': 'application/json' } }, opts || {});
		const r = await fetch(BASE + path, init);
		let body = null;
		try { body = await r.json(); } catch (_) { /* not JSON */ }
		if (!r.ok) {
			const e = body && body.error;
			const msg = (e && (e.message || (typeof e === 'string' && e))) || (r.status + ' ' + r.statusText);
			const err = new Error(msg);
			err.status = r.status;
			throw err;
		}
		return body;
	}

	function fmtAge(secs) {
		if (!secs || secs < 0) return '—';
		secs = Math.floor(secs);
		if (secs < 60) return secs + 's';
		const m = Math.floor(secs / 60), s = secs % 60;
		if (m < 60) return m + 'm ' + s + 's';
		const h = Math.floor(m / 60);
		if (h < 48) return h + 'h ' + (m % 60) + 'm';
		return Math.floor(h / 24) + 'd ' + (h % 24) + 'h';
	}

	function ago(iso) {
		if (!iso) return 'never';
		const t = Date.parse(iso);
		if (isNaN(t)) return iso;
		return fmtAge((Date.now() - t) / 1000) + ' ago';
	}

	function fmtNum(v, unit) {
		if (v === null || v === undefined) return '—';
		const digits = v >= 100 ? 0 : v >= 10 ? 1 : 2;
		return v.toFixed(digits) + (unit ? ' ' + unit : '');
	}

	// spark draws one sparkline: values as an SVG polyline with a light area
	// under it (null = nothing happened in that interval: a gap), and the
	// latest value as text.
	function spark(label, values, unit) {
		values = values || [];
		const latest = values.length ? values[values.length - 1] : null;
		const head = el('div', { class: 'label' }, el('span', { text: label }), el('span', { class: 'value', text: fmtNum(latest, unit) }));
		const box = el('div', { class: 'spark', 'data-metric': label }, head);
		if (values.length < 2) {
			box.append(el('div', { class: 'empty', text: 'collecting samples…' }));
			return box;
		}
		const W = 200, H = 36, pad = 2;
		const top = Math.max(0, ...values.filter(v => v !== null && v !== undefined)) || 1;
		const x = i => ((i / (values.length - 1)) * W).toFixed(1);
		const y = v => (H - pad - (v / top) * (H - 2 * pad)).toFixed(1);
		const svg = document.createElementNS(SVG, 'svg');
		svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
		svg.setAttribute('preserveAspectRatio', 'none');
		svg.setAttribute('role', 'img');
		svg.setAttribute('aria-label', `${label}: last ${values.length} samples, peak ${fmtNum(top, unit)}`);
		// One polyline (and area) per run of non-null values.
		let run = [];
		const flush = () => {
			if (run.length === 0) return;
			if (run.length === 1) run.push([run[0][0], run[0][1]]); // a lone point: a dot
			const pts = run.map(([i, v]) => x(i) + ',' + y(v)).join(' ');
			const area = document.createElementNS(SVG, 'polygon');
			area.setAttribute('points', `${x(run[0][0])},${H} ${pts} ${x(run[run.length - 1][0])},${H}`);
			const line = document.createElementNS(SVG, 'polyline');
			line.setAttribute('points', pts);
			svg.append(area, line);
			run = [];
		};
		values.forEach((v, i) => {
			if (v === null || v === undefined) flush();
			else run.push([i, v]);
		});
		flush();
		box.append(svg);
		return box;
	}

	function stat(label, value, cls, alert) {
		return el('div', null, el('dt', { text: label }), el('dd', { class: cls + (alert ? ' alert' : ''), text: value }));
	}

	// What the operator typed in a receiver's replay range, kept across the
	// re-renders of its card.
	const ranges = {};

	function rangeForm(rc) {
		const r = ranges[rc.name] || (ranges[rc.name] = { since: '', until: '' });
		const input = (field, label) => {
			const i = el('input', { type: 'datetime-local', step: '1', class: 'range-' + field, 'data-receiver': rc.name, 'aria-label': label });
			i.value = r[field];
			i.addEventListener('input', () => { r[field] = i.value; });
			return i;
		};
		return el('div', { class: 'range' },
			'Accepted from ', input('since', 'accepted from (local time)'),
			' to ', input('until', 'accepted before (local time)'), ' ',
			el('button', { type: 'button', class: 'replay-range', 'data-receiver': rc.name }, 'Replay range'));
	}

	function deadTable(rc, page) {
		const wrap = el('div', { class: 'dead' });
		const head = el('div', { class: 'dead-head' }, el('h4', { text: `Dead letters (${rc.dead})` }));
		const all = el('button', { type: 'button', class: 'replay-all', 'data-receiver': rc.name }, 'Replay all');
		head.append(all);
		wrap.append(head, rangeForm(rc));
		const tbody = el('tbody');
		for (const d of page.data) {
			const answer = d.last_status ? 'HTTP ' + d.last_status : (d.last_error || '—');
			tbody.append(el('tr', { class: 'dead-letter', 'data-seq': String(d.seq) },
				el('td', { class: 'num', text: String(d.seq) }),
				el('td', { text: d.event }),
				el('td', { class: 'key', text: d.dedupe_key }),
				el('td', { text: ago(d.accepted_at) }),
				el('td', { text: ago(d.dead_at) }),
				el('td', { class: 'num', text: String(d.attempts) }),
				el('td', { text: answer, title: d.last_error || null }),
				el('td', null, el('button', { type: 'button', class: 'replay', 'data-receiver': rc.name, 'data-seq': String(d.seq) }, 'Replay'))));
		}
		const table = el('table', null,
			el('thead', null, el('tr', null, ...['Seq', 'Event', 'Dedupe key', 'Accepted', 'Dead since', 'Attempts', 'Last answer', ''].map(h => el('th', { text: h })))),
			tbody);
		wrap.append(table);
		if (page.next_before !== null && page.next_before !== undefined) {
			wrap.append(el('p', { class: 'muted', text: `Showing the newest ${page.data.length}; the admin API lists them all.` }));
		}
		return wrap;
	}

	function receiverCard(rc, page, lines) {
		const h = rc.upstream_health || {};
		const card = el('article', { class: 'card receiver', 'data-name': rc.name },
			el('div', { class: 'card-head' },
				el('h3', { text: rc.name }),
				el('span', { class: 'badge state ' + (h.state || 'unknown'), text: h.state || 'unknown' }),
				rc.paused ? el('span', { class: 'badge paused', text: 'paused' }) : null,
				el('button', { type: 'button', class: rc.paused ? 'resume' : 'pause', 'data-receiver': rc.name },
					rc.paused ? 'Resume forwarding' : 'Pause forwarding')),
			el('div', { class: 'upstream muted', text: '→ ' + (rc.upstream || '(not configured)') }));
		card.append(el('dl', { class: 'stats' },
			stat('Queued', String(rc.queued), 'count-queued'),
			stat('Retrying', String(rc.retrying), 'count-retrying', rc.retrying > 0),
			stat('In flight', String(rc.in_flight), 'count-in-flight'),
			stat('Dead', String(rc.dead), 'count-dead', rc.dead > 0),
			stat('Oldest', fmtAge(rc.oldest_queued_age_seconds), 'oldest-age')));
		const health = el('div', { class: 'health' });
		health.append(`Last success ${ago(h.last_success)}`);
		if (h.last_failure) {
			health.append(` · last failure ${ago(h.last_failure)}`);
			if (h.consecutive_failures) health.append(` · ${h.consecutive_failures} in a row`);
		}
		if (h.last_error || h.last_status) {
			health.append(el('br'), 'Last error: ', el('span', { class: 'err last-error', text: h.last_error || ('HTTP ' + h.last_status) }));
		}
		card.append(health);
		const l = lines || {};
		card.append(el('div', { class: 'sparks' },
			spark('Received /s', l.received_per_second, '/s'),
			spark('Ack latency', l.ack_ms, 'ms'),
			spark('Forwarded /s', l.delivered_per_second, '/s'),
			spark('Forward latency', l.attempt_ms, 'ms')));
		if (rc.dead > 0 && page) card.append(deadTable(rc, page));
		return card;
	}

	// accountsTable lists the sender's accounts, those with failed
	// deliveries first (at most 50; the admin API and CLI list them all).
	function accountsTable(accounts) {
		const rows = (accounts || []).slice().sort((a, b) => (b.failed - a.failed) || (b.pending - a.pending) || a.account.localeCompare(b.account));
		const tbody = el('tbody');
		for (const a of rows.slice(0, 50)) {
			tbody.append(el('tr', { class: 'sender-account', 'data-account': a.account },
				el('td', { text: a.account }),
				el('td', { text: a.name || '—' }),
				el('td', { class: 'num', text: String(a.webhooks) + (a.disabled ? ` (${a.disabled} disabled)` : '') }),
				el('td', { class: 'num', text: String(a.pending) }),
				el('td', { class: 'num', text: String(a.delivered) }),
				el('td', { class: 'num' + (a.failed > 0 ? ' alert' : ''), text: String(a.failed) })));
		}
		const wrap = el('div', { class: 'accounts' }, el('h4', { text: `Accounts (${rows.length})` }),
			el('table', null,
				el('thead', null, el('tr', null, ...['Account', 'Name', 'Webhooks', 'Pending', 'Delivered', 'Failed'].map(h => el('th', { text: h })))),
				tbody));
		if (rows.length > 50) wrap.append(el('p', { class: 'muted', text: 'Showing 50; `caddy webhook sender accounts` lists them all.' }));
		return wrap;
	}

	function senderCard(st, err, lines, accounts) {
		if (err && err.status === 404) return el('p', { class: 'muted', id: 'sender-absent', text: 'No webhook_sender app is configured.' });
		if (err) return el('p', { class: 'muted', text: 'Sender unavailable: ' + err.message });
		const l = lines || {};
		return el('article', { class: 'card sender' },
			el('dl', { class: 'stats' },
				stat('Accounts', String(st.accounts), 'sender-accounts'),
				stat('Pending', String(st.pending), 'sender-pending'),
				stat('In flight', String(st.in_flight), 'sender-in-flight'),
				stat('Delivered', String(st.delivered), 'sender-delivered'),
				stat('Failed', String(st.failed), 'sender-failed', st.failed > 0),
				stat('Behind by', fmtAge(st.oldest_pending_age_seconds), 'sender-behind')),
			el('div', { class: 'sparks' },
				spark('Delivered /s', l.delivered_per_second, '/s'),
				spark('Attempts /s', l.attempts_per_second, '/s'),
				spark('Attempt latency', l.attempt_ms, 'ms')),
			accounts ? accountsTable(accounts) : null);
	}

	function show(id, text, isError) {
		const box = document.getElementById(id);
		if (!text) { box.hidden = true; box.textContent = ''; return; }
		box.textContent = text;
		box.className = isError ? 'error' : '';
		box.hidden = false;
	}

	let generation = 0;
	async function refresh() {
		const a = document.activeElement;
		if (a && a.tagName === 'INPUT' && a.closest('#receivers')) return; // the operator is typing
		const mine = ++generation;
		try {
			const [recv, series] = await Promise.all([api('receivers'), api('series')]);
			const pages = await Promise.all(recv.map(rc => rc.dead > 0
				? api('receivers/' + encodeURIComponent(rc.name) + '/dead?limit=25').catch(() => null)
				: Promise.resolve(null)));
			let sender = null, senderErr = null, accounts = null;
			try { sender = await api('sender'); } catch (e) { senderErr = e; }
			if (sender) accounts = await api('sender/accounts').catch(() => null);
			if (mine !== generation) return; // a newer refresh is under way
			const box = document.getElementById('receivers');
			if (recv.length === 0) {
				box.replaceChildren(el('p', { class: 'muted', text: 'No webhook_receiver is configured.' }));
			} else {
				box.replaceChildren(...recv.map((rc, i) => receiverCard(rc, pages[i], series.receivers[rc.name])));
			}
			document.getElementById('sender').replaceChildren(senderCard(sender, senderErr, series.sender, accounts));
			document.getElementById('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
			show('problem', null);
		} catch (e) {
			if (mine === generation) show('problem', 'Could not load the dashboard data: ' + e.message, true);
		}
	}

	async function replay(btn, selector, what) {
		const name = btn.getAttribute('data-receiver');
		btn.disabled = true;
		try {
			const r = await api('receivers/' + encodeURIComponent(name) + '/dead/replay', {
				method: 'POST',
				headers: { 'Content-Type': 'application/json', 'Accept': 'application/json' },
				body: selector,
			});
			show('flash', `Replayed ${r.replayed} ${what} of ${name}: back in the queue.`);
		} catch (e) {
			show('flash', 'Replay failed: ' + e.message, true);
		}
		// Disabled only while the request is under way: a button the next
		// refresh keeps (nothing changed, or the refresh is slow) must work.
		btn.disabled = false;
		await refresh();
	}

	async function setPaused(btn, paused) {
		const name = btn.getAttribute('data-receiver');
		btn.disabled = true;
		try {
			await api('receivers/' + encodeURIComponent(name) + (paused ? '/pause' : '/resume'), {
				method: 'POST',
				headers: { 'Content-Type': 'application/json', 'Accept': 'application/json' },
				body: '{}',
			});
			show('flash', paused ? `Forwarding of ${name} paused: envelopes are accepted and wait.` : `Forwarding of ${name} resumed.`);
		} catch (e) {
			show('flash', (paused ? 'Pause' : 'Resume') + ' failed: ' + e.message, true);
		}
		btn.disabled = false;
		await refresh();
	}

	// rfc3339 turns a datetime-local value (the browser's local time) into
	// an RFC 3339 instant, '' when empty.
	function rfc3339(v) {
		if (!v) return '';
		const d = new Date(v);
		return isNaN(d) ? null : d.toISOString();
	}

	document.addEventListener('click', ev => {
		const btn = ev.target.closest('button');
		if (!btn || btn.disabled) return;
		if (btn.classList.contains('pause') || btn.classList.contains('resume')) {
			setPaused(btn, btn.classList.contains('pause'));
		} else if (btn.classList.contains('replay-range')) {
			const r = ranges[btn.getAttribute('data-receiver')] || {};
			const since = rfc3339(r.since), until = rfc3339(r.until);
			if (since === null || until === null || (!since && !until)) {
				show('flash', 'Give a start or an end (or both) for the range to replay.', true);
				return;
			}
			const sel = {};
			if (since) sel.since = since;
			if (until) sel.until = until;
			replay(btn, JSON.stringify(sel), 'dead letter(s) of that range');
		} else if (btn.classList.contains('replay')) {
			// The seq is a uint64: sent as its digits, not through a JS number.
			const seq = btn.getAttribute('data-seq');
			if (/^[0-9]+$/.test(seq)) replay(btn, '{"seqs":[' + seq + ']}', 'dead letter');
		} else if (btn.classList.contains('replay-all')) {
			replay(btn, '{"all":true}', 'dead letter(s)');
		}
	});

	refresh();
	setInterval(refresh, REFRESH_MS);
})();
