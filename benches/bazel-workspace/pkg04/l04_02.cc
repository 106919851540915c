#include "pkg04/l04_02.h"
#include "pkg04/l04_01.h"
#include <algorithm>
#include <numeric>

namespace l04_02 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 15) ^ (b + 38); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 38, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 5 == 0; }));
  total += l04_01::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l04_02:" + std::to_string(score({seed, seed * 15, 38}));
}
}  // namespace l04_02
