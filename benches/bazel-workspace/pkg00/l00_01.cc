#include "pkg00/l00_01.h"
#include "pkg00/l00_00.h"
#include <algorithm>
#include <numeric>

namespace l00_01 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 4) ^ (b + 1); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 1, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 3 == 0; }));
  total += l00_00::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l00_01:" + std::to_string(score({seed, seed * 4, 1}));
}
}  // namespace l00_01
