// Form fields that show the server's errors where they belong: each field is tied to the name
// the API uses for it, and an `invalid_field` answer lands next to the field it names.

import { h, uid } from './dom.js';

/// A labelled field: `field('Name', 'name', input, 'hint')`. `name` is the API's field name.
export function field(label, name, input, hint) {
  const id = input.id || uid();
  input.id = id;
  const error = h('p', { class: 'field-error', id: `${id}-error`, hidden: true });
  const help = hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null;
  input.setAttribute('aria-describedby', [help && help.id, error.id].filter(Boolean).join(' '));
  // A reason shown for the old value goes once the value changes.
  const changed = () => {
    error.hidden = true;
    input.removeAttribute('aria-invalid');
  };
  input.addEventListener('input', changed);
  input.addEventListener('change', changed);
  const wrap = h(
    'div',
    { class: 'field', dataset: { field: name } },
    input.type === 'checkbox' ? h('label', { for: id, class: 'check' }, input, ' ', label) : [h('label', { for: id }, label), input],
    help,
    error,
  );
  return wrap;
}

export const input = (attrs) => h('input', { type: 'text', ...attrs });

export function select(options, attrs) {
  return h(
    'select',
    attrs || {},
    options.map(([value, label]) => h('option', { value }, label)),
  );
}

/// Clear the errors shown in `form`.
export function clearErrors(form) {
  for (const e of form.querySelectorAll('.field-error, .form-error')) {
    e.hidden = true;
    e.textContent = '';
  }
  for (const i of form.querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
}

/// Show `err` (an ApiError) next to the field it names, if `form` has it: whether it did.
export function showAtField(form, err) {
  clearErrors(form);
  // `sources[1].path` falls back to `sources[1]`, then to `sources`.
  let wrap = null;
  let name = err.field;
  while (name && !wrap) {
    wrap = form.querySelector(`[data-field="${CSS.escape(name)}"]`);
    const parent = name.replace(/(\.[^.[\]]+|\[\d+\])$/, '');
    name = parent === name ? null : parent;
  }
  if (wrap) {
    const e = wrap.querySelector('.field-error');
    // Next to the field, its name in front of the reason says nothing more.
    e.textContent = err.field && err.message.startsWith(`${err.field}: `) ? err.message.slice(err.field.length + 2) : err.message;
    e.hidden = false;
    const i = wrap.querySelector('input, select, textarea');
    if (i) {
      i.setAttribute('aria-invalid', 'true');
      i.focus();
    }
    return true;
  }
  return false;
}

/// Show `err` (an ApiError) next to the field it names, or at the top of `form`.
export function showError(form, err) {
  if (showAtField(form, err)) return;
  let top = form.querySelector('.form-error');
  if (!top) {
    top = h('p', { class: 'form-error error', role: 'alert' });
    form.prepend(top);
  }
  top.textContent = err.message;
  top.hidden = false;
}

/// Run `action` for a submitted form: the button is disabled meanwhile, errors are shown.
export async function submitting(form, action) {
  const buttons = form.querySelectorAll('button[type="submit"]');
  buttons.forEach((b) => (b.disabled = true));
  clearErrors(form);
  try {
    return await action();
  } catch (e) {
    showError(form, e);
    return undefined;
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}
