import { useEffect, useRef } from 'preact/hooks';
import { generate } from 'lean-qr/nano';

interface Props {
  /** What the code holds (an otpauth:// URI). */
  text: string;
  /** Says what the code is, for screen readers. */
  label: string;
}

/** Pixels per module, and the quiet zone around the code (4 modules, as the standard asks). */
const SCALE = 5;
const QUIET = 4;

/**
 * A QR code drawn on a canvas, dark on white, module by module (no HTML strings, no data
 * URLs: the CSP allows neither).
 */
export function QrCode({ text, label }: Props) {
  const canvas = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    const element = canvas.current;
    const context = element?.getContext('2d');
    if (element === null || element === undefined || context === null || context === undefined) {
      return;
    }
    const code = generate(text);
    const side = (code.size + 2 * QUIET) * SCALE;
    element.width = side;
    element.height = side;
    context.fillStyle = '#ffffff';
    context.fillRect(0, 0, side, side);
    context.fillStyle = '#000000';
    for (let y = 0; y < code.size; y++) {
      for (let x = 0; x < code.size; x++) {
        if (code.get(x, y)) {
          context.fillRect((x + QUIET) * SCALE, (y + QUIET) * SCALE, SCALE, SCALE);
        }
      }
    }
  }, [text]);
  return <canvas ref={canvas} class="qr" role="img" aria-label={label} data-testid="qr" />;
}
