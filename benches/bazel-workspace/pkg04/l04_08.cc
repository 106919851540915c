#include "pkg04/l04_08.h"
#include "pkg04/l04_07.h"
#include <algorithm>
#include <numeric>

namespace l04_08 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 8) ^ (b + 44); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 44, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 4 == 0; }));
  total += l04_07::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l04_08:" + std::to_string(score({seed, seed * 8, 44}));
}
}  // namespace l04_08
