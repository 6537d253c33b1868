import { LabIcon } from '@jupyterlab/ui-components';

/** A kernel in a box: the sandbox the agent works in. Uses the theme's icon colours. */
const svgstr = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M4 3h16a1 1 0 0 1 1 1v16a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1V4a1 1 0 0 1 1-1zm1 2v14h14V5H5z"/>
    <path d="M7.3 8.7l1.4-1.4L13.4 12l-4.7 4.7-1.4-1.4 3.3-3.3-3.3-3.3z"/>
    <rect x="13" y="15" width="4.5" height="2" rx="0.5"/>
  </g>
</svg>`;

export const kernelAgentIcon = new LabIcon({ name: 'kernelagent:panel', svgstr });
