// The terminal emulator, loaded only by the terminal page (a dynamic import: the first
// page does not carry xterm's ~300 KB). See pages/terminal.tsx.
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import '@xterm/xterm/css/xterm.css';

export interface Emulator {
  term: Terminal;
  /** Sizes the terminal to its element; false when the element is hidden (no size). */
  fit: () => boolean;
}

/**
 * An xterm.js terminal in `element`. Copy and paste: a selection is copied with
 * Ctrl+Shift+C (or the browser's Copy); Ctrl+Shift+V (or the browser's Paste) pastes.
 * `onLeave` is called on Ctrl+Shift+L, for keyboard users to leave the terminal, which
 * otherwise takes every key (Tab included) for the shell.
 */
export function createEmulator(element: HTMLElement, onLeave: () => void): Emulator {
  const term = new Terminal({
    cursorBlink: true,
    fontFamily: "ui-monospace, 'DejaVu Sans Mono', 'Liberation Mono', monospace",
    fontSize: 14,
    scrollback: 5000,
  });
  const fitAddon = new FitAddon();
  term.loadAddon(fitAddon);
  term.attachCustomKeyEventHandler((event) => {
    if (event.type !== 'keydown' || !event.ctrlKey || !event.shiftKey || event.altKey || event.metaKey) {
      return true;
    }
    const key = event.key.toLowerCase();
    if (key === 'c') {
      // Not Ctrl+C (the shell's interrupt): the browser's own copy of the selection.
      event.preventDefault();
      const selection = term.getSelection();
      if (selection !== '') {
        void navigator.clipboard?.writeText(selection).catch(() => {});
      }
      return false;
    }
    if (key === 'v') {
      // The browser pastes into xterm's input (its paste event), bracketed if the shell asks.
      return false;
    }
    if (key === 'l') {
      event.preventDefault();
      onLeave();
      return false;
    }
    return true;
  });
  term.open(element);
  const fit = () => {
    const size = fitAddon.proposeDimensions();
    // A hidden tab has no size: keep the terminal's until it is shown again.
    if (size === undefined || !(size.cols > 0) || !(size.rows > 0) || element.offsetWidth === 0) {
      return false;
    }
    fitAddon.fit();
    return true;
  };
  return { term, fit };
}
